"""python tools/report.py --dataset=synthetic|wiki|... [--data_dir=DIR] --bits=16,32,64 \
    --methods=daah,no_adversarial,no_attention,dcmh [--epochs=N] [--runs_dir=runs/report] \
    [--out=report.md] [--figure=PNG] [--extra_flags="--flag=value ..."]

Trains DAAH and its ablations on identical data, backbone and splits, and writes a Markdown
report: a mAP@all table (rows: methods; columns: I->T and T->I per code length) with the chance
level, for synthetic data the attention-mask / object-box IoU against random masks of the same
size, and a precision-recall figure (Hamming radius 0..q) at the largest code length.

Each (method, bits) cell is one `python -m daah_tf.train` subprocess with

    --flagfile=<the dataset's flagfile> --verbose=2 <--extra_flags> <the method's flags>
    --bits=B [--epochs=N] --model_dir=<runs_dir>/<dataset>/<method>_<B>bit [--data_dir=DIR]

in that order (absl: the last value of a flag wins), so --extra_flags may change the data,
model and schedule of every cell alike (e.g. --extra_flags="--flagfile=flags/smoke.cfg" for a
run of seconds) but never a cell's method, bits, epochs or directory. The dataset's flagfile is
flags/demo.cfg for synthetic and flags/<dataset>_<B>bit.cfg otherwise. A cell whose run
directory already holds metrics.json is reused, not retrained, whatever flags it was trained
with (the report says so, and lists each run's configured epochs; delete the directory or pick
another --runs_dir to retrain); a cell with a run directory but no metrics.json (an interrupted
run) is resumed by the train command.
Training output goes to <run dir>/train.log.

The PR curves are computed here from codes: the run's best checkpoint (restore_model), the
run's query and database splits (splits.json), `CodeEncoder` and
`daah_tf.metrics.precision_recall_curve`. They are cached in <runs_dir>/<dataset>/pr_curves.json
keyed by a hash of each run's metrics.json, so a rerun with every cell reused loads no
TensorFlow at all.

Methods:
    daah             the full method (no extra flags)
    no_adversarial   --adversarial=false: attention at its random initialisation, no L_adv
    no_attention     --attention=none: codes from the whole features, no L_adv
    dcmh             --loss=dcmh --attention=none: the DCMH-style baseline objective
"""

import argparse
import datetime
import hashlib
import io
import json
import logging
import math
import os
import shlex
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: no C++ chatter

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from daah_tf.atomic import atomic_write_bytes  # noqa: E402  (no TensorFlow behind it)

# name: (flags added to the train command, what the report calls it)
METHODS = {
    "daah": ((), "DAAH"),
    "no_adversarial": (("--adversarial=false",), "DAAH, no adversarial training"),
    "no_attention": (("--attention=none",), "DAAH, no attention"),
    "dcmh": (("--loss=dcmh", "--attention=none"), "DCMH-style loss, no attention"),
}
# Which methods have an image attention whose mask can be scored against the object boxes.
ATTENTION_METHODS = ("daah", "no_adversarial")
DIRECTIONS = {"i2t": "I->T", "t2i": "T->I"}
LOG_TAIL_LINES = 15


class ReportError(Exception):
    """A problem the user can fix (bad argument, missing flagfile): printed, no traceback."""


# ----------------------------------------------------------------------------------------------
# Arguments and cells


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Train DAAH and its ablations and write a Markdown report.")
    parser.add_argument("--dataset", default="synthetic",
                        help="synthetic, wiki, mirflickr25k, nuswide, iaprtc12, folder")
    parser.add_argument("--data_dir", default="",
                        help="Folder of the dataset's files (every dataset but synthetic).")
    parser.add_argument("--bits", default="16,32,64", help="Code lengths, comma-separated.")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"Comma-separated, of: {', '.join(METHODS)}.")
    parser.add_argument("--epochs", type=int, default=None,
                        help="Training epochs of every cell (default: the flagfile's).")
    parser.add_argument("--runs_dir", default=os.path.join("runs", "report"),
                        help="Run directories go to RUNS_DIR/<dataset>/<method>_<bits>bit.")
    parser.add_argument("--out", default="report.md", help="The Markdown report to write.")
    parser.add_argument("--figure", default=None,
                        help="The PR-curve PNG (default: next to --out, <out stem>_pr.png).")
    parser.add_argument("--extra_flags", default="",
                        help="Flags added to every train command, before the cell's own.")
    args = parser.parse_args(argv)
    try:
        args.bits = sorted({int(b) for b in args.bits.split(",") if b.strip()})
    except ValueError:
        raise ReportError(f"--bits takes integers, e.g. 16,32,64; got {args.bits!r}") from None
    if not args.bits or min(args.bits) < 1:
        raise ReportError(f"--bits takes positive integers, got {args.bits!r}")
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        raise ReportError(f"--methods: unknown {unknown or 'none given'}; "
                          f"choose from {', '.join(METHODS)}")
    if args.epochs is not None and args.epochs < 1:
        raise ReportError(f"--epochs must be at least 1, got {args.epochs}")
    if args.dataset != "synthetic" and not args.data_dir:
        raise ReportError(f"--dataset={args.dataset} needs --data_dir")
    if args.data_dir:
        # The runs record data_dir in config.json; absolute, so they evaluate from anywhere.
        args.data_dir = os.path.abspath(args.data_dir)
    args.extra_flags = shlex.split(args.extra_flags)
    if args.figure is None:
        stem = os.path.splitext(args.out)[0]
        args.figure = stem + "_pr.png"
    return args


def flagfile_for(dataset, bits):
    """The flagfile every cell of `dataset` starts from (absolute path); ReportError if none."""
    name = "demo.cfg" if dataset == "synthetic" else f"{dataset}_{bits}bit.cfg"
    path = os.path.join(REPO_ROOT, "flags", name)
    if not os.path.exists(path):
        raise ReportError(f"no flagfile for --dataset={dataset} at {bits} bits: {path} is missing")
    return path


def run_dir(args, method, bits):
    return os.path.join(args.runs_dir, args.dataset, f"{method}_{bits}bit")


def train_command(args, method, bits):
    """The argv that trains one cell (see the module docstring for the order of flags)."""
    flagfile = flagfile_for(args.dataset, bits)
    command = [sys.executable, "-m", "daah_tf.train", f"--flagfile={flagfile}", "--verbose=2",
               *args.extra_flags, *METHODS[method][0], f"--bits={bits}"]
    if args.epochs is not None:
        command.append(f"--epochs={args.epochs}")
    command.append(f"--model_dir={run_dir(args, method, bits)}")
    if args.data_dir:
        command.append(f"--data_dir={args.data_dir}")
    return command


def display_command(command):
    """The train argv as a user would type it (python, repo-relative flagfile)."""
    shown = ["python", *command[1:]]
    prefix = f"--flagfile={REPO_ROOT}{os.sep}"
    shown = [f"--flagfile={a[len(prefix):]}" if a.startswith(prefix) else a for a in shown]
    return shlex.join(shown)


# ----------------------------------------------------------------------------------------------
# Training


def _read_json(path):
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def _tail(path, lines=LOG_TAIL_LINES):
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            return "".join(stream.readlines()[-lines:])
    except OSError:
        return ""


def run_cell(args, method, bits, position, total, print_fn=print):
    """Trains one cell, or reuses its finished run.

    Returns a dict: method, bits, model_dir, command (str), status ("reused", "trained" or
    "failed"), metrics (dict or None), config (the run's config.json dict or None), seconds.
    """
    model_dir = run_dir(args, method, bits)
    command = train_command(args, method, bits)
    cell = {"method": method, "bits": bits, "model_dir": model_dir,
            "command": display_command(command), "metrics": None, "config": None,
            "seconds": 0.0}
    metrics_path = os.path.join(model_dir, "metrics.json")
    label = f"[{position}/{total}] {method} {bits} bits"
    if os.path.exists(metrics_path):
        cell["status"] = "reused"
        print_fn(f"{label}: reusing {model_dir} (metrics.json exists; not retrained)")
    else:
        os.makedirs(model_dir, exist_ok=True)
        log_path = os.path.join(model_dir, "train.log")
        print_fn(f"{label}: training into {model_dir} (log: {log_path})", flush=True)
        environment = dict(os.environ)
        # The subprocess must import this checkout's daah_tf whatever the caller's cwd.
        environment["PYTHONPATH"] = os.pathsep.join(
            p for p in (REPO_ROOT, environment.get("PYTHONPATH")) if p)
        started = time.time()
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"$ {shlex.join(command)}\n")
            log.flush()
            returncode = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT,
                                         env=environment)
        cell["seconds"] = time.time() - started
        if returncode != 0 or not os.path.exists(metrics_path):
            cell["status"] = "failed"
            print_fn(f"{label}: training FAILED (exit status {returncode}); last lines of "
                     f"{log_path}:\n{_tail(log_path)}")
            return cell
        cell["status"] = "trained"
    cell["metrics"] = _read_json(metrics_path)
    config_path = os.path.join(model_dir, "config.json")
    cell["config"] = _read_json(config_path) if os.path.exists(config_path) else None
    epochs = _configured_epochs(cell)
    if cell["status"] == "reused" and args.epochs is not None and epochs != args.epochs:
        print_fn(f"{label}: note: the reused run was configured for {epochs} epochs, not "
                 f"--epochs={args.epochs}; delete {model_dir} to retrain it")
    metrics = cell["metrics"]
    done = f" in {cell['seconds']:.0f} s" if cell["status"] == "trained" else ""
    print_fn(f"{label}: {cell['status']}{done}: mAP I->T {metrics['i2t_map']:.4f} "
             f"T->I {metrics['t2i_map']:.4f} (chance {metrics['chance_map']:.4f})", flush=True)
    return cell


def _configured_epochs(cell):
    config = cell["config"] or {}
    return config.get("train", {}).get("epochs")


# ----------------------------------------------------------------------------------------------
# PR curves from codes


def _metrics_stamp(model_dir):
    with open(os.path.join(model_dir, "metrics.json"), "rb") as stream:
        return hashlib.sha1(stream.read()).hexdigest()


def _finite_or_none(values):
    return [float(v) if math.isfinite(float(v)) else None for v in values]


def compute_pr_curves(model_dir, data_cache=None):
    """Hamming-radius precision and recall of a run's best checkpoint, query vs database.

    Args:
        model_dir: a finished run directory.
        data_cache: a dict reused across calls: runs with identical data settings load the
            dataset once.

    Returns:
        {"i2t": {"precision": [...], "recall": [...]}, "t2i": ...}, each list (q + 1,) over
        radius 0..q, None where undefined (no query retrieves anything at that radius).
    """
    from daah_tf import metrics
    from daah_tf.data.splits import read_splits
    from daah_tf.evaluate import check_input_kinds, load_run_data, split_rows
    from daah_tf.training.evaluation import CodeEncoder
    from daah_tf.training.restore import restore_model

    # Restoring for inference leaves the checkpoint's save_counter unread, which TensorFlow
    # reports as a warning that means nothing here.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    model, featurizer, config, inputs = restore_model(model_dir)
    # The data depends on the data settings only; the split comes from each run's splits.json.
    data_key = json.dumps(json.loads(config.to_json())["data"], sort_keys=True)
    data_cache = {} if data_cache is None else data_cache
    if data_key not in data_cache:
        data_cache[data_key] = load_run_data(model_dir, config, config.data.dataset)
    data = data_cache[data_key]
    data.splits = read_splits(os.path.join(model_dir, "splits.json"))
    check_input_kinds(data, inputs)
    query_rows, db_rows = split_rows(data, "query"), split_rows(data, "database")
    encoder = CodeEncoder(model)
    batch, size = config.data.batch_size, config.data.image_size
    query = encoder.encode_split(data, query_rows, batch, featurizer, size)
    database = encoder.encode_split(data, db_rows, batch, featurizer, size)
    curves = {}
    for name, (source, target) in (("i2t", ("image", "text")), ("t2i", ("text", "image"))):
        precision, recall = metrics.precision_recall_curve(
            query[source], database[target], data.labels[query_rows], data.labels[db_rows])
        curves[name] = {"precision": _finite_or_none(precision),
                        "recall": _finite_or_none(recall)}
    return curves


def pr_curves_for(cells, cache_path, print_fn=print):
    """PR curves of the finished cells, from the cache where the run is unchanged.

    Returns {method: curves (see compute_pr_curves)}; updates the cache file atomically.
    """
    cache = _read_json(cache_path) if os.path.exists(cache_path) else {}
    results, data_cache, changed = {}, {}, False
    for cell in cells:
        if cell["metrics"] is None:
            continue
        name = os.path.basename(cell["model_dir"])
        stamp = _metrics_stamp(cell["model_dir"])
        entry = cache.get(name)
        if entry is None or entry.get("stamp") != stamp:
            print_fn(f"PR curves of {cell['model_dir']}: encoding query and database", flush=True)
            try:
                entry = {"stamp": stamp, "curves": compute_pr_curves(cell["model_dir"],
                                                                     data_cache)}
            except Exception as error:  # one bad run must not lose the whole report
                print_fn(f"PR curves of {cell['model_dir']} FAILED: {error}")
                continue
            cache[name] = entry
            changed = True
        else:
            print_fn(f"PR curves of {cell['model_dir']}: reusing {cache_path}")
        results[cell["method"]] = entry["curves"]
    if changed:
        atomic_write_bytes(cache_path, (json.dumps(cache, indent=1) + "\n").encode())
    return results


# ----------------------------------------------------------------------------------------------
# Output


def plot_pr_curves(curves, methods, dataset, bits, path, chance=None):
    """Writes the PR figure (one panel per direction, one line per method) as PNG.

    curves: {method: compute_pr_curves(...)}; chance: the chance level, drawn dotted, or None.
    Returns the path, or None (with the reason printed) when matplotlib is missing.
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
            panel.plot(recall, precision, marker=".", markersize=4,
                       label=METHODS[method][1])
        if chance is not None:
            panel.axhline(chance, color="grey", linestyle=":", label="chance")
        panel.set(xlabel="recall", title=f"{label}, {dataset}, {bits} bits",
                  xlim=(0, 1.02), ylim=(0, 1.02))
        panel.grid(alpha=0.3)
    axes[0].set_ylabel("precision")
    # One legend below both panels: inside a panel it would hide curves.
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8,
                  frameon=False)
    figure.suptitle("Precision-recall by Hamming radius 0..q (query vs database)", fontsize=10)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    pyplot.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _fmt(value, digits=4):
    return "n/a" if value is None else f"{value:.{digits}f}"


def _cell_map(cells, method, bits, key):
    for cell in cells:
        if cell["method"] == method and cell["bits"] == bits and cell["metrics"]:
            return cell["metrics"].get(key)
    return None


def map_table(cells, methods, bits_list):
    """Markdown lines: rows methods (and chance), columns I->T and T->I per code length."""
    header = "| method | " + " | ".join(f"{b} bits {label}" for b in bits_list
                                         for label in DIRECTIONS.values()) + " |"
    lines = [header, "|---|" + "---:|" * (2 * len(bits_list))]
    for method in methods:
        values = [_fmt(_cell_map(cells, method, b, f"{d}_map")) for b in bits_list
                  for d in DIRECTIONS]
        lines.append(f"| {METHODS[method][1]} (`{method}`) | " + " | ".join(values) + " |")
    chance = []
    for b in bits_list:
        value = next((_cell_map(cells, m, b, "chance_map") for m in methods
                      if _cell_map(cells, m, b, "chance_map") is not None), None)
        chance += [_fmt(value)] * 2
    lines.append("| chance (random ranking) | " + " | ".join(chance) + " |")
    return lines


def iou_table(cells):
    """Markdown lines: mask/object IoU of the attention methods against random masks."""
    lines = ["| method | bits | mask IoU | random mask of the same size | ratio |",
             "|---|---:|---:|---:|---:|"]
    rows = 0
    for cell in cells:
        metrics = cell["metrics"] or {}
        if cell["method"] not in ATTENTION_METHODS or "mask_iou" not in metrics:
            continue
        iou, random_iou = metrics["mask_iou"], metrics["random_mask_iou"]
        ratio = f"{iou / random_iou:.1f}x" if random_iou else "n/a"
        lines.append(f"| {METHODS[cell['method']][1]} (`{cell['method']}`) | {cell['bits']} | "
                     f"{iou:.3f} | {random_iou:.3f} | {ratio} |")
        rows += 1
    return lines if rows else []


def runs_table(cells):
    lines = ["| method | bits | run directory | epochs (configured / trained) | best epoch | "
             "status | seconds (metrics.json) |", "|---|---:|---|---|---:|---|---:|"]
    for cell in cells:
        metrics = cell["metrics"] or {}
        seconds = metrics.get("seconds")
        lines.append(
            f"| `{cell['method']}` | {cell['bits']} | `{cell['model_dir']}` | "
            f"{_configured_epochs(cell) or 'n/a'} / {metrics.get('epochs_trained', 'n/a')} | "
            f"{metrics.get('best_epoch', 'n/a')} | {cell['status']} | "
            f"{'n/a' if seconds is None else f'{seconds:.0f}'} |")
    return lines


def report_markdown(args, cells, command_line, figure_path, started_at):
    """The report's text."""
    bits_list, methods = args.bits, args.methods
    first = next((c for c in cells if c["metrics"]), None)
    lines = [f"# DAAH ablation report: {args.dataset}", "",
             f"- date: {started_at}",
             f"- command: `{command_line}`",
             f"- runs: `{os.path.join(args.runs_dir, args.dataset)}`"
             + (f", data: `{args.data_dir}`" if args.data_dir else ""),
             f"- epochs: {args.epochs if args.epochs is not None else 'the flagfile default'}"
             + _epochs_note(cells)]
    if first is not None:
        metrics = first["metrics"]
        lines.append(f"- split: query {metrics['num_query']} vs database "
                     f"{metrics['num_database']}; model selection on the validation split "
                     "carved from the training pairs")
    lines += ["", "## mAP@all (Hamming ranking, query vs database)", ""]
    lines += map_table(cells, methods, bits_list)
    lines += ["", "Chance is the mAP of a random ranking (the mean share of relevant database "
              "items per query)."]
    ious = iou_table(cells)
    if ious:
        lines += ["", "## Does the attention find the object?", "",
                  "Mean IoU, over the query images, between the attended cells of the image mask "
                  "(upsampled to pixels) and the union of the object boxes, against random masks "
                  "with as many attended cells per image. `no_adversarial` keeps the attention "
                  "layer at its random initial weights (its mask still moves as the encoder it "
                  "scores learns): the control without the adversarial game.", ""]
        lines += ious
    largest = max(bits_list)
    if figure_path:
        relative = os.path.relpath(figure_path, os.path.dirname(os.path.abspath(args.out)))
        lines += ["", f"## Precision-recall at {largest} bits", "",
                  f"![PR curves at {largest} bits]({relative})", "",
                  "Precision and recall of retrieving everything within Hamming radius r, "
                  f"r = 0..{largest}, mean over queries (precision over the queries that "
                  "retrieve something at that radius)."]
    lines += ["", "## Runs", ""] + runs_table(cells)
    lines += ["", "Train commands (each cell; `reused` cells were not rerun):", "", "```"]
    lines += [cell["command"] for cell in cells]
    lines += ["```", ""]
    return "\n".join(lines)


def _epochs_note(cells):
    configured = sorted({_configured_epochs(c) for c in cells if c["config"]} - {None})
    if not configured:
        return ""
    return f" (configured in the runs: {', '.join(str(e) for e in configured)})"


# ----------------------------------------------------------------------------------------------


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
        for bits in args.bits:
            flagfile_for(args.dataset, bits)  # every flagfile exists before anything trains
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started_at = datetime.datetime.now().astimezone().strftime("%a %d %b %Y %H:%M:%S %Z")
    command_line = shlex.join(["python", "tools/report.py", *argv])
    grid = [(m, b) for b in args.bits for m in args.methods]
    cells = [run_cell(args, method, bits, position, len(grid))
             for position, (method, bits) in enumerate(grid, 1)]
    largest = max(args.bits)
    cache_path = os.path.join(args.runs_dir, args.dataset, "pr_curves.json")
    curves = pr_curves_for([c for c in cells if c["bits"] == largest], cache_path)
    figure_path = None
    if curves:
        chance = next((_cell_map(cells, m, largest, "chance_map") for m in args.methods
                       if _cell_map(cells, m, largest, "chance_map") is not None), None)
        figure_path = plot_pr_curves(curves, args.methods, args.dataset, largest, args.figure,
                                     chance)
    text = report_markdown(args, cells, command_line, figure_path, started_at)
    atomic_write_bytes(args.out, text.encode())
    print(f"Wrote {args.out}" + (f" and {figure_path}" if figure_path else ""))
    failed = [f"{c['method']}_{c['bits']}bit" for c in cells if c["status"] == "failed"]
    if failed:
        print(f"error: {len(failed)} cell(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
