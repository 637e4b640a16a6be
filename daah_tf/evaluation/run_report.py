"""A run directory evaluated on its query and database splits: the printed table, and
DIR/eval/metrics.json, pr_curve.csv, pr_curve.png, precision_at_k.png and TensorBoard scalars
in DIR/tensorboard/eval (see docs/evaluation_commands.md).

TensorFlow loads only once the run directory and its checkpoint are found (`daah_tf.run`), so a
typo fails in a second.
"""

import csv
import io
import json
import os

import numpy as np

from daah_tf.atomic import atomic_write_bytes
from daah_tf.evaluation.retrieval import DIRECTIONS, evaluate_codes
from daah_tf.run import EVAL_DIR, METRICS_FILE, Run

PR_CURVE_CSV = "pr_curve.csv"
PR_CURVE_PNG = "pr_curve.png"
PRECISION_AT_K_PNG = "precision_at_k.png"


def evaluate_run(model_dir, *, dataset=None, data_dir=None, split_query="query",
                 split_database="database", top_k=1000, precision_k=100, tie_rule="index",
                 checkpoint="best", print_fn=print):
    """Evaluates a run directory and writes DIR/eval; returns the metrics dict."""
    run = Run.open(model_dir)
    path, note = run.checkpoint_in_use(checkpoint)  # before building the model
    if note:
        print_fn(f"Note: {note}.")
    run.restore(checkpoint)
    data = run.load_data(dataset, data_dir)
    (query_rows, query_codes), (db_rows, db_codes) = run.encode_splits(
        data, split_query, split_database)
    results = evaluate_codes(query_codes, data.labels[query_rows], db_codes, data.labels[db_rows],
                             top_k, precision_k, tie_rule)
    results.update(model_dir=model_dir, dataset=data.name, bits=int(query_codes["image"].shape[1]),
                   checkpoint=checkpoint, checkpoint_path=path,
                   checkpoint_epoch=run.checkpoint_epoch(path), split_query=split_query,
                   split_database=split_database)
    for line in table_lines(results):
        print_fn(line)
    write_outputs(results, model_dir, print_fn)
    return results


# ----------------------------------------------------------------------------------------------
# Output: table, files, plots, TensorBoard


def table_lines(results):
    """The printed report: one row per direction and the chance level."""
    k_map, k_precision = results["top_k"], results["precision_k_effective"]
    radius = f"P(r<={results['radius']})"
    header = f"{'':<9}{'mAP@all':>9}{f'mAP@{k_map}':>10}{f'P@{k_precision}':>9}{radius:>10}"
    lines = [
        f"Evaluation of {results['model_dir']}: {results['dataset']}, {results['bits']} bits, "
        f"checkpoint {results['checkpoint']} (epoch {results['checkpoint_epoch']}), "
        f"ties by {results['tie_rule']}",
        f"query {results['num_query']} ({results['split_query']}) vs database "
        f"{results['num_database']} ({results['split_database']})",
        "",
        header,
    ]
    for name, direction in DIRECTIONS.items():
        row = results["directions"][name]
        lines.append(f"{direction.label:<9}{row['map_all']:>9.4f}{row['map_at_k']:>10.4f}"
                     f"{row['precision_at_k']:>9.4f}{_fmt(row['precision_radius_2']):>10}")
    chance = results["chance_map"]
    lines.append(f"{'chance':<9}{chance:>9.4f}{chance:>10.4f}{chance:>9.4f}{chance:>10.4f}"
                 "   (random ranking: share of relevant items)")
    size = results["num_database"]
    if results["top_k_effective"] < k_map:
        lines.append(f"mAP@{k_map} is mAP@all here: the database holds {size} items.")
    if k_precision < results["precision_k"]:
        lines.append(f"P@{results['precision_k']} is cut to P@{size}: the database holds {size} "
                     "items.")
    return lines


def _fmt(value):
    return "n/a" if value is None else f"{value:.4f}"


def pr_curve_csv(results):
    """CSV text: direction,radius,precision,recall; bits + 1 rows per direction (nan: none)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["direction", "radius", "precision", "recall"])
    for name, curve in results["pr_curve"].items():
        for radius, precision, recall in zip(curve["radius"], curve["precision"],
                                             curve["recall"], strict=True):
            writer.writerow([name, radius, _csv_number(precision), _csv_number(recall)])
    return buffer.getvalue()


def _csv_number(value):
    return "nan" if value is None else repr(float(value))


def plot_files(results, eval_dir):
    """Writes pr_curve.png and precision_at_k.png; returns their paths, or None without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        from matplotlib import pyplot
    except ImportError:
        return None
    title = f"{results['dataset']}, {results['bits']} bits"
    paths = []
    figure, axes = pyplot.subplots(figsize=(5, 4))
    for name, curve in results["pr_curve"].items():
        recall = [np.nan if v is None else v for v in curve["recall"]]
        precision = [np.nan if v is None else v for v in curve["precision"]]
        axes.plot(recall, precision, marker=".", label=DIRECTIONS[name].label)
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02),
             title=f"PR by Hamming radius ({title})")
    paths.append(_save_figure(figure, axes, os.path.join(eval_dir, PR_CURVE_PNG)))
    figure, axes = pyplot.subplots(figsize=(5, 4))
    curve = results["precision_at_k_curve"]
    for name, direction in DIRECTIONS.items():
        axes.plot(curve["k"], curve[name], label=direction.label)
    axes.axhline(results["chance_map"], color="grey", linestyle=":", label="chance")
    axes.set(xscale="log", xlabel="K", ylabel="precision@K", ylim=(0, 1.02),
             title=f"Precision@K ({title})")
    paths.append(_save_figure(figure, axes, os.path.join(eval_dir, PRECISION_AT_K_PNG)))
    return paths


def _save_figure(figure, axes, path):
    from matplotlib import pyplot

    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    pyplot.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def log_scalars(log_dir, results, step):
    """TensorBoard scalars <metric>/<direction>, at step = the checkpoint's epoch."""
    import tensorflow as tf  # loaded by the restore before this runs

    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        for name, row in results["directions"].items():
            for key, value in row.items():
                if value is not None:
                    tf.summary.scalar(f"{key}/{name}", value, step=step)
        tf.summary.scalar("chance_map", results["chance_map"], step=step)
    writer.close()


def write_outputs(results, model_dir, print_fn=print):
    """metrics.json, pr_curve.csv and the plots in DIR/eval, scalars in DIR/tensorboard/eval."""
    run = Run(model_dir)
    eval_dir = run.eval_dir
    os.makedirs(eval_dir, exist_ok=True)
    text = json.dumps(results, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_bytes(os.path.join(eval_dir, METRICS_FILE), text.encode())
    atomic_write_bytes(os.path.join(eval_dir, PR_CURVE_CSV), pr_curve_csv(results).encode())
    plots = plot_files(results, eval_dir)
    log_dir = os.path.join(run.tensorboard_dir, EVAL_DIR)
    log_scalars(log_dir, results, results["checkpoint_epoch"])
    written = [METRICS_FILE, PR_CURVE_CSV] + ([os.path.basename(p) for p in plots or []])
    print_fn(f"Wrote {', '.join(written)} to {eval_dir}, TensorBoard scalars to {log_dir}.")
    if plots is None:
        print_fn("Plots skipped: plotting needs the `plot` extra (pip install 'daah_tf[plot]').")
