"""What tools/report.py writes: the precision-recall figure and the Markdown report.

Cells are the dicts of report.run_cell and report_seeds.floor_cell; ``labels`` maps each method
to what the report calls it (report.LABELS). The mean ± std tables themselves are in
tools/report_seeds.py.
"""

import io
import math
import os

import report_seeds  # tools/; no TensorFlow behind it
from report_seeds import FLOOR

from daah_tf.atomic import atomic_write_bytes
from daah_tf.evaluation import retrieval

DIRECTIONS = {name: retrieval.DIRECTIONS[name].label for name in retrieval.CROSS_MODAL}


def configured_epochs(cell):
    """The epochs the cell's run was configured for (its config.json), or None."""
    config = cell["config"] or {}
    return config.get("train", {}).get("epochs")


def chance_level(cells, methods, bits):
    """The chance mAP at ``bits``: that of the first of ``methods`` with a finished run."""
    values = (_cell_map(cells, method, bits, "chance_map") for method in methods)
    return next((value for value in values if value is not None), None)


def plot_pr_curves(curves, methods, labels, dataset, bits, path, chance=None):
    """Writes the PR figure (one panel per direction, one line per method) as PNG.

    curves: {method: report.compute_pr_curves(...)}; chance: the chance level, drawn dotted, or
    None. Returns the path, or None (with the reason printed) when matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        from matplotlib import pyplot
    except ImportError:
        print("PR figure skipped: it needs matplotlib, the `plot` extra "
              "(pip install -e '.[plot]').")
        return None
    figure, axes = pyplot.subplots(1, len(DIRECTIONS), figsize=(10, 4.6), sharey=True)
    for panel, (direction, label) in zip(axes, DIRECTIONS.items(), strict=True):
        for method in methods:
            if method not in curves:
                continue
            curve = curves[method][direction]
            recall = [math.nan if v is None else v for v in curve["recall"]]
            precision = [math.nan if v is None else v for v in curve["precision"]]
            panel.plot(recall, precision, marker=".", markersize=4, label=labels[method])
        if chance is not None:
            panel.axhline(chance, color="grey", linestyle=":", label="chance")
        panel.set(xlabel="recall", title=f"{label}, {dataset}, {bits} bits",
                  xlim=(0, 1.02), ylim=(0, 1.02))
        panel.grid(alpha=0.3)
    axes[0].set_ylabel("precision")
    # One legend below both panels: inside a panel it would hide curves.
    handles, names = axes[0].get_legend_handles_labels()
    figure.legend(handles, names, loc="lower center", ncol=len(names), fontsize=8,
                  frameon=False)
    figure.suptitle("Precision-recall by Hamming radius 0..q (query vs database)", fontsize=10)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    pyplot.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _cell_map(cells, method, bits, key):
    for cell in cells:
        if cell["method"] == method and cell["bits"] == bits and cell["metrics"]:
            return cell["metrics"].get(key)
    return None


def runs_table(cells):
    lines = ["| method | bits | seed | run directory | epochs (configured / trained) | "
             "best epoch | status | seconds (metrics.json) |",
             "|---|---:|---:|---|---|---:|---|---:|"]
    for cell in cells:
        metrics = cell["metrics"] or {}
        seconds = metrics.get("seconds")
        if cell["method"] == FLOOR:
            lines.append(f"| `floor` | {cell['bits']} | {cell['seed']} | `{cell['model_dir']}` "
                         f"(linear_floor.json) | - | - | {cell['status']} | - |")
            continue
        lines.append(
            f"| `{cell['method']}` | {cell['bits']} | {cell['seed']} | `{cell['model_dir']}` | "
            f"{configured_epochs(cell) or 'n/a'} / {metrics.get('epochs_trained', 'n/a')} | "
            f"{metrics.get('best_epoch', 'n/a')} | {cell['status']} | "
            f"{'n/a' if seconds is None else f'{seconds:.0f}'} |")
    return lines


def report_markdown(args, cells, labels, command_line, figure_path, started_at):
    """The report's text."""
    bits_list, methods = args.bits, args.methods
    first = next((c for c in cells if c["metrics"] and c["method"] != FLOOR), None)
    name = args.name if args.name == args.dataset else f"{args.name} ({args.dataset})"
    lines = [f"# DAAH ablation report: {name}", "",
             f"- date: {started_at}",
             f"- command: `{command_line}`",
             f"- seeds: {', '.join(str(s) for s in args.seeds)} (each a separate run; tables: "
             "mean ± sample standard deviation over the seeds)",
             f"- runs: `{os.path.join(args.runs_dir, args.name)}`"
             + (f", data: `{args.data_dir}`" if args.data_dir else ""),
             f"- epochs: {args.epochs if args.epochs is not None else 'the flagfile default'}"
             + _epochs_note(cells)]
    if first is not None:
        metrics = first["metrics"]
        lines.append(f"- split: query {metrics['num_query']} vs database "
                     f"{metrics['num_database']}; model selection on the validation split "
                     "carved from the training pairs")
    lines += ["", "## mAP@all (Hamming ranking, query vs database)", ""]
    lines += report_seeds.map_table(cells, methods, bits_list, labels, args.seeds, DIRECTIONS)
    lines += ["", "Chance is the mAP of a random ranking (the mean share of relevant database "
              "items per query). The floor is `tools/linear_floor.py` on each seed's DAAH run "
              "(same splits and input features, projection seeded by the run's seed)."]
    split_note = report_seeds.split_note(cells)
    if split_note:
        lines += ["", split_note]
    paired = report_seeds.paired_table(cells, methods, bits_list, labels, DIRECTIONS)
    if paired:
        lines += ["", "## DAAH against each method, seed by seed", "",
                  "Each cell: the mean over the seeds of DAAH's mAP minus the method's (runs of "
                  "the same seed), ± its standard error (sample std / sqrt(n)), and (k/n) the "
                  "seeds where DAAH is at or above it. A mean difference within about two "
                  "standard errors of 0 is a tie that more seeds may turn either way.", ""]
        lines += paired
    lines += ["", "## Attention and codes at the last epoch", "",
              "Share of attended image and text feature dimensions (cells) and bit balance (mean "
              "over bits of |batch mean of sign(H)|: 0 balanced, 1 constant codes), training "
              "batches of the last epoch; the selected model's shares: its masks on the query "
              "set (the checkpoint the numbers above come from). Where the dataset has object "
              "boxes: mean IoU, over "
              "the query images, between the attended cells of the image mask (upsampled to "
              "pixels) and the union of the object boxes, against random masks with as many "
              "attended cells. `no_adversarial` keeps the attention layer at its random initial "
              "weights: the control without the adversarial game.", ""]
    lines += report_seeds.diagnostics_table(cells, methods, bits_list, labels, args.seeds)
    largest = max(bits_list)
    if figure_path:
        relative = os.path.relpath(figure_path, os.path.dirname(os.path.abspath(args.out)))
        lines += ["", f"## Precision-recall at {largest} bits", "",
                  f"![PR curves at {largest} bits]({relative})", "",
                  f"Seed {args.seeds[0]}'s runs. Precision and recall of retrieving everything "
                  "within Hamming radius r, "
                  f"r = 0..{largest}, mean over queries (precision over the queries that "
                  "retrieve something at that radius)."]
    lines += ["", "## Runs", ""] + runs_table(cells)
    lines += ["", "Train commands (each cell; `reused` cells were not rerun):", "", "```"]
    lines += [cell["command"] for cell in cells]
    lines += ["```", ""]
    return "\n".join(lines)


def _epochs_note(cells):
    configured = sorted({configured_epochs(c) for c in cells if c["config"]} - {None})
    if not configured:
        return ""
    return f" (configured in the runs: {', '.join(str(e) for e in configured)})"
