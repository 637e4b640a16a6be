"""python -m daah_tf.evaluate --model_dir=DIR [--checkpoint=best|latest] [--tie_rule=index|average]

Evaluates a trained run on its query and database splits: restores the run's model (its best
checkpoint by default), encodes both splits into binary codes, and prints mAP@all, mAP@K,
precision@K and precision within Hamming radius 2 for I->T, T->I, I->I and T->T, with the chance
level. The dataset and every data setting come from DIR/config.json and the split from
DIR/splits.json, so the numbers are those of exactly the training run's split.

Writes DIR/eval/metrics.json, DIR/eval/pr_curve.csv, DIR/eval/pr_curve.png and
DIR/eval/precision_at_k.png (with matplotlib, the `plot` extra), and TensorBoard scalars in
DIR/tensorboard/eval. See docs/evaluation_commands.md.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: no C++ chatter

import csv  # noqa: E402
import dataclasses  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging as pylogging  # noqa: E402
import math  # noqa: E402

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from daah_tf import metrics  # noqa: E402
from daah_tf.atomic import atomic_write_bytes  # noqa: E402
from daah_tf.data.base import DatasetError  # noqa: E402
from daah_tf.data.registry import DATASETS  # noqa: E402

FLAGS = flags.FLAGS
DIRECTION_LABELS = {"i2t": "I->T", "t2i": "T->I", "i2i": "I->I", "t2t": "T->T"}
CHECKPOINTS = ("best", "latest")
TIE_RULES = ("index", "average")
RADIUS = 2  # precision within Hamming radius 2, the hashing literature's usual radius
_CURVE_POINTS = 40  # K values of the precision@K curve (log-spaced, 1..N)


class EvaluationError(Exception):
    """A problem the user can fix (no run, no checkpoint, unknown split): printed, no traceback."""


def define_flags(flag_values=FLAGS):
    """Registers this command's flags (called only when the module runs as a program).

    Not at import: daah_tf.search imports the helpers below, and a process may import this
    module next to daah_tf.flags, which defines --model_dir, --dataset and --data_dir too.
    """
    flags.DEFINE_string("model_dir", None, "Run directory written by daah_tf.train.",
                        flag_values=flag_values)
    flags.DEFINE_enum("dataset", None, DATASETS,
                      "Override the run's dataset (default: from config.json).",
                      flag_values=flag_values)
    flags.DEFINE_string("data_dir", None, "Override the run's data folder (e.g. moved data).",
                        flag_values=flag_values)
    flags.DEFINE_string("split_query", "query", "Split whose items are the queries.",
                        flag_values=flag_values)
    flags.DEFINE_string("split_database", "database", "Split whose items are retrieved.",
                        flag_values=flag_values)
    flags.DEFINE_integer("top_k", 1000, "K of mAP@K.", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("precision_k", 100, "K of precision@K.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_enum("tie_rule", "index", TIE_RULES,
                      "mAP with equal distances: index (database order, as published numbers) "
                      "or average (tie-aware, order-independent).", flag_values=flag_values)
    flags.DEFINE_enum("checkpoint", "best", CHECKPOINTS,
                      "best: the checkpoint selected on validation; latest: the last one.",
                      flag_values=flag_values)
    flags.mark_flag_as_required("model_dir", flag_values=flag_values)


# ----------------------------------------------------------------------------------------------
# The run directory and its data


def check_run_dir(model_dir):
    """Raises EvaluationError unless model_dir holds a training run (before TensorFlow loads)."""
    if not os.path.isdir(model_dir):
        raise EvaluationError(f"--model_dir={model_dir}: no such directory")
    if not os.path.exists(os.path.join(model_dir, "config.json")):
        raise EvaluationError(f"--model_dir={model_dir} is not a run directory (no config.json); "
                              "train one with python -m daah_tf.train --model_dir=DIR")


def checkpoint_in_use(model_dir, which="best"):
    """The checkpoint restore_model(model_dir, which) restores: (path, note or None).

    "best" falls back to the latest checkpoint when the run had no validation split (as
    restore_model does); the note says so.
    """
    directory = os.path.join(model_dir, "checkpoints")
    if not os.path.exists(os.path.join(directory, "checkpoint")):  # fail before TF loads
        raise EvaluationError(_no_checkpoint(model_dir, directory))
    if which == "best":
        best = _latest_checkpoint(os.path.join(directory, "best"))
        if best is not None:
            return best, None
    latest = _latest_checkpoint(directory)
    if latest is None:
        raise EvaluationError(_no_checkpoint(model_dir, directory))
    note = None if which == "latest" else "no best checkpoint (no validation): using the latest"
    return latest, note


def _latest_checkpoint(directory):
    """The newest checkpoint path listed in directory/checkpoint, or None."""
    import tensorflow as tf

    try:
        return tf.train.latest_checkpoint(directory)
    except (ValueError, tf.errors.OpError) as error:
        raise EvaluationError(f"{directory}/checkpoint is unreadable: {error}") from None


def _no_checkpoint(model_dir, directory):
    return (f"{model_dir} holds no checkpoint ({directory} is missing or empty); train it first "
            f"with python -m daah_tf.train --model_dir={model_dir}")


def checkpoint_epoch(path):
    """Epochs completed when the checkpoint at `path` was written (0 if it does not say)."""
    import tensorflow as tf

    try:
        return int(tf.train.load_variable(path, "epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.OpError, ValueError):
        return 0


def run_config(model_dir, dataset=None, data_dir=None):
    """The run's RunConfig, with --dataset / --data_dir overrides applied to its data part."""
    from daah_tf.training.restore import load_run_config

    config = load_run_config(model_dir)
    changes = {name: value for name, value in (("dataset", dataset), ("data_dir", data_dir))
               if value is not None}
    if changes:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, **changes))
    return config


def load_run_data(model_dir, config, trained_dataset):
    """The dataset of `config` with the training run's split (DIR/splits.json).

    The split file's rows index the dataset the run was trained on, so it applies only when
    config names that dataset; another dataset (--dataset) keeps its own protocol split.
    """
    from daah_tf.data.splits import read_splits
    from daah_tf.training.trainer import load_data

    data = load_data(config)
    path = os.path.join(model_dir, "splits.json")
    if config.data.dataset != trained_dataset:
        logging.warning("--dataset=%s is not the run's dataset (%s): using its own split.",
                        config.data.dataset, trained_dataset)
    elif os.path.exists(path):
        splits = read_splits(path)
        top = max((int(rows.max()) for rows in splits.values() if len(rows)), default=-1)
        if top >= len(data):
            raise EvaluationError(f"{path} names row {top}, but the dataset has {len(data)} rows: "
                                  "is --data_dir the data the run was trained on?")
        data.splits = splits
    else:
        logging.warning("%s is missing: using the split the run's settings reproduce.", path)
    return data


def split_rows(data, name):
    """(n,) int64 dataset rows of split `name`; EvaluationError if unknown or empty."""
    if name not in data.splits:
        raise EvaluationError(f"no split {name!r}; this run has {', '.join(sorted(data.splits))}")
    rows = np.asarray(data.splits[name], dtype=np.int64)
    if len(rows) == 0:
        raise EvaluationError(f"split {name!r} is empty")
    return rows


def check_input_kinds(data, inputs):
    """EvaluationError if the data is not what the model was trained on (inputs.json)."""
    for modality in ("image", "text"):
        trained, given = inputs[f"{modality}_kind"], getattr(data, f"{modality}_kind")
        if trained != given:
            raise EvaluationError(f"the model takes {modality} inputs of kind {trained!r}, but "
                                  f"{data.name} gives {given!r}")


# ----------------------------------------------------------------------------------------------
# Metrics


def precision_k_grid(num_database, extra=()):
    """Sorted int64 K values for the precision@K curve: log-spaced over 1..N, plus `extra`."""
    grid = np.geomspace(1, num_database, _CURVE_POINTS).round().astype(np.int64)
    return np.unique(np.concatenate([grid, np.asarray(extra, np.int64), [num_database]]))


def direction_metrics(query_codes, query_labels, db_codes, db_labels, top_k, precision_k, ks,
                      tie_rule):
    """Every number of one direction.

    Args:
        query_codes, db_codes: (Q, q) and (N, q) +-1 codes.
        query_labels, db_labels: (Q, L) and (N, L) multi-hot labels.
        top_k: K of mAP@K; precision_k: K of P@K (<= N); ks: (m,) K values of the P@K curve.
        tie_rule: "index" or "average" (mAP only; P@K always ranks ties by database index).

    Returns:
        {"map_all", "map_at_k", "precision_at_k", "precision_radius_2": float,
         "pr_precision", "pr_recall": (q + 1,) float (NaN where undefined),
         "precision_curve": (m,) float}.
    """
    args = (query_codes, db_codes, query_labels, db_labels)
    precision, recall = metrics.precision_recall_curve(*args)
    curve = metrics.precision_at_k(*args, ks)
    return {
        "map_all": metrics.mean_average_precision(*args, None, tie_rule),
        "map_at_k": metrics.mean_average_precision(*args, top_k, tie_rule),
        "precision_at_k": float(curve[np.searchsorted(ks, precision_k)]),
        "precision_radius_2": metrics.precision_within_radius(*args, RADIUS),
        "pr_precision": precision,
        "pr_recall": recall,
        "precision_curve": curve,
    }


def evaluate_codes(query_codes, query_labels, db_codes, db_labels, top_k=1000, precision_k=100,
                   tie_rule="index"):
    """The four directions' metrics from codes ({"image", "text"} -> (n, q)) and labels.

    Returns a JSON-ready dict (NaN as None): per-direction scalars under "directions" and flat
    "<dir>_map" keys (mAP@all, as in the training run's metrics.json), the PR curves, the P@K
    curve, the chance level and the K values used (clipped to the database size N).
    """
    from daah_tf.training.evaluation import DIRECTIONS, chance_map

    num_database = len(db_labels)
    k_precision = min(precision_k, num_database)
    ks = precision_k_grid(num_database, [k_precision])
    per_direction = {
        name: direction_metrics(query_codes[source], query_labels, db_codes[target], db_labels,
                                top_k, k_precision, ks, tie_rule)
        for name, (source, target) in DIRECTIONS.items()
    }
    scalars = ("map_all", "map_at_k", "precision_at_k", "precision_radius_2")
    results = {
        "tie_rule": tie_rule,
        "top_k": top_k,
        "top_k_effective": min(top_k, num_database),
        "precision_k": precision_k,
        "precision_k_effective": k_precision,
        "radius": RADIUS,
        "num_query": len(query_labels),
        "num_database": num_database,
        "chance_map": chance_map(query_labels, db_labels),
        "directions": {name: {key: values[key] for key in scalars}
                       for name, values in per_direction.items()},
        "pr_curve": {name: {"radius": list(range(len(values["pr_precision"]))),
                            "precision": values["pr_precision"].tolist(),
                            "recall": values["pr_recall"].tolist()}
                     for name, values in per_direction.items()},
        "precision_at_k_curve": dict(k=ks.tolist(), **{
            name: values["precision_curve"].tolist() for name, values in per_direction.items()}),
    }
    results.update({f"{name}_map": values["map_all"] for name, values in per_direction.items()})
    return json_ready(results)


def json_ready(value):
    """A copy with NaN/inf floats as None and NumPy scalars as Python numbers (strict JSON)."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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
    for name, label in DIRECTION_LABELS.items():
        row = results["directions"][name]
        lines.append(f"{label:<9}{row['map_all']:>9.4f}{row['map_at_k']:>10.4f}"
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
        axes.plot(recall, precision, marker=".", label=DIRECTION_LABELS[name])
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02),
             title=f"PR by Hamming radius ({title})")
    paths.append(_save_figure(figure, axes, os.path.join(eval_dir, "pr_curve.png")))
    figure, axes = pyplot.subplots(figsize=(5, 4))
    curve = results["precision_at_k_curve"]
    for name, label in DIRECTION_LABELS.items():
        axes.plot(curve["k"], curve[name], label=label)
    axes.axhline(results["chance_map"], color="grey", linestyle=":", label="chance")
    axes.set(xscale="log", xlabel="K", ylabel="precision@K", ylim=(0, 1.02),
             title=f"Precision@K ({title})")
    paths.append(_save_figure(figure, axes, os.path.join(eval_dir, "precision_at_k.png")))
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
    import tensorflow as tf

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
    eval_dir = os.path.join(model_dir, "eval")
    os.makedirs(eval_dir, exist_ok=True)
    text = json.dumps(results, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_bytes(os.path.join(eval_dir, "metrics.json"), text.encode())
    atomic_write_bytes(os.path.join(eval_dir, "pr_curve.csv"), pr_curve_csv(results).encode())
    plots = plot_files(results, eval_dir)
    log_scalars(os.path.join(model_dir, "tensorboard", "eval"), results,
                results["checkpoint_epoch"])
    written = ["metrics.json", "pr_curve.csv"] + ([os.path.basename(p) for p in plots or []])
    print_fn(f"Wrote {', '.join(written)} to {eval_dir}, TensorBoard scalars to "
             f"{os.path.join(model_dir, 'tensorboard', 'eval')}.")
    if plots is None:
        print_fn("Plots skipped: plotting needs the `plot` extra (pip install 'daah_tf[plot]').")


# ----------------------------------------------------------------------------------------------
# The command


def evaluate_run(model_dir, *, dataset=None, data_dir=None, split_query="query",
                 split_database="database", top_k=1000, precision_k=100, tie_rule="index",
                 checkpoint="best", print_fn=print):
    """Evaluates a run directory and writes DIR/eval; returns the metrics dict."""
    check_run_dir(model_dir)
    path, note = checkpoint_in_use(model_dir, checkpoint)  # before building the model
    if note:
        print_fn(f"Note: {note}.")
    from daah_tf.training.evaluation import CodeEncoder

    model, featurizer, trained_config, inputs = _restore(model_dir, checkpoint, path)
    config = run_config(model_dir, dataset, data_dir)
    data = load_run_data(model_dir, config, trained_config.data.dataset)
    check_input_kinds(data, inputs)
    query_rows, db_rows = split_rows(data, split_query), split_rows(data, split_database)
    encoder = CodeEncoder(model)
    batch, size = config.data.batch_size, config.data.image_size
    query_codes = encoder.encode_split(data, query_rows, batch, featurizer, size)
    db_codes = encoder.encode_split(data, db_rows, batch, featurizer, size)
    results = evaluate_codes(query_codes, data.labels[query_rows], db_codes, data.labels[db_rows],
                             top_k, precision_k, tie_rule)
    results.update(model_dir=model_dir, dataset=data.name, bits=int(query_codes["image"].shape[1]),
                   checkpoint=checkpoint, checkpoint_path=path,
                   checkpoint_epoch=checkpoint_epoch(path), split_query=split_query,
                   split_database=split_database)
    for line in table_lines(results):
        print_fn(line)
    write_outputs(results, model_dir, print_fn)
    return results


def _restore(model_dir, checkpoint, path):
    """restore_model, with a checkpoint that does not fit the model as an EvaluationError."""
    import tensorflow as tf

    from daah_tf.training.restore import restore_model

    try:
        return restore_model(model_dir, checkpoint)
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        # E.g. a run trained by an older daah_tf whose checkpoints hold other objects.
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise EvaluationError(f"cannot restore {path} into the model of {model_dir}: "
                              f"{reason}") from None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])} (flags start with --)")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines drown the table
        # Restoring for inference leaves the checkpoint's save_counter unread, which TensorFlow
        # reports at exit as a warning that means nothing here.
        pylogging.getLogger("tensorflow").setLevel(pylogging.ERROR)
    try:
        evaluate_run(FLAGS.model_dir, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir,
                     split_query=FLAGS.split_query, split_database=FLAGS.split_database,
                     top_k=FLAGS.top_k, precision_k=FLAGS.precision_k, tie_rule=FLAGS.tie_rule,
                     checkpoint=FLAGS.checkpoint)
    except (EvaluationError, DatasetError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    define_flags()
    app.run(main)
