"""python tools/report.py --dataset=synthetic|wiki|folder|... [--data_dir=DIR] [--name=NAME] \
    --bits=16,32,64 --seeds=0,1,2 --methods=daah,no_adversarial,no_attention,dcmh,floor \
    [--epochs=N] [--runs_dir=runs/report] [--out=report.md] [--figure=PNG] \
    [--extra_flags="--flag=value ..."]

Trains DAAH and its ablations on identical data, backbone and splits, once per seed, and writes
a Markdown report: a mAP@all table (rows: methods; columns: I->T and T->I per code length; each
cell the mean ± standard deviation over the seeds) with the chance level and the same-run linear
floor; DAAH against each other method seed by seed (mean difference ± its standard error, and
in how many seeds DAAH is at or above it); the last epoch's attended shares and bit balances,
and for synthetic data the attention-mask / object-box IoU against random masks of the same
size; and a precision-recall figure (Hamming radius 0..q) at the largest code length (first
seed).

The full comparison of the README's "Results" (hours on 2 CPU cores; every finished cell is
reused by a rerun):

    python tools/report.py --dataset=synthetic --bits=32 --out=report_synthetic.md
    python tools/report.py --dataset=wiki --data_dir=../shared/data/wiki --bits=16,32,64 \
        --out=report_wiki.md
    python tools/report.py --dataset=folder --name=fashion9k \
        --data_dir=../shared/data/fashion-9k --bits=64 --out=report_fashion9k.md

Each (method, bits, seed) cell is one `python -m daah_tf.train` subprocess with

    --flagfile=<the dataset's flagfile> --verbose=2 <--extra_flags> <the method's flags>
    --seed=S --bits=B [--epochs=N] --model_dir=<runs_dir>/<name>/<method>_<B>bit/seed<S>
    [--data_dir=DIR]

in that order (absl: the last value of a flag wins), so --extra_flags may change the data,
model and schedule of every cell alike (e.g. --extra_flags="--flagfile=flags/smoke.cfg" for a
run of seconds) but never a cell's method, seed, bits, epochs or directory. NAME (--name,
default: the dataset) names the run directories and the flagfile: flags/demo.cfg for synthetic,
flags/<NAME>_<B>bit.cfg otherwise (flags/fashion9k_64bit.cfg for the folder data above). A cell
whose run directory already holds metrics.json is reused, not retrained, whatever flags it was
trained with (the report says so, and lists each run's configured epochs; delete the directory
or pick another --runs_dir to retrain); a cell with a run directory but no metrics.json (an
interrupted run) is resumed by the train command.
Training output goes to <run dir>/train.log.

What the seed changes (`--seed` of daah_tf.train): the weight initialisation, the batch order
and the validation pairs carved from the training split. The query/database split of a dataset
with a fixed protocol (wiki; a folder dataset whose rows name their split, as fashion-9k's do)
does not change with it; synthetic data is drawn from the seed (data and split), and the
random-protocol datasets (mirflickr25k, nuswide, folder rows without a split) draw their split
from it. The report checks the runs' splits.json and says which case it saw.

The `floor` pseudo-method is `tools/linear_floor.py` on the DAAH run of the same bits and seed
(its splits and input features; ridge to the labels, random projection, sign): see
tools/report_seeds.py, which also holds the mean ± std tables. The Markdown text and the PR
figure are written by tools/report_output.py.

The PR curves are computed here from codes: the run's best checkpoint and its query and database
splits (splits.json), opened with `daah_tf.run.Run`, and
`daah_tf.evaluation.retrieval.pr_curves`. They are cached in <runs_dir>/<dataset>/pr_curves.json
keyed by a hash of each run's metrics.json, so a rerun with every cell reused loads no
TensorFlow at all.

Methods:
    daah             the full method (no extra flags)
    no_adversarial   --adversarial=false: attention at its random initialisation, no L_adv
    no_attention     --attention=none: codes from the whole features, no L_adv
    dcmh             --loss=dcmh --attention=none --center_weight=0: the DCMH-style baseline
    floor            the linear floor of the daah run of the same bits and seed (needs daah)
"""

import argparse
import datetime
import hashlib
import json
import logging
import os
import shlex
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: no C++ chatter

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import report_output  # noqa: E402  (tools/; no TensorFlow behind these two)
import report_seeds  # noqa: E402
from report_output import configured_epochs  # noqa: E402
from report_seeds import FLOOR  # noqa: E402

# No TensorFlow behind these: it loads only when a run is restored.
from daah_tf.atomic import atomic_write_bytes  # noqa: E402
from daah_tf.evaluation import retrieval  # noqa: E402
from daah_tf.run import CONFIG_FILE, METRICS_FILE, TRAIN_LOG_FILE, Run  # noqa: E402

# name: (flags added to the train command, what the report calls it)
METHODS = {
    "daah": ((), "DAAH"),
    "no_adversarial": (("--adversarial=false",), "DAAH, no adversarial training"),
    "no_attention": (("--attention=none",), "DAAH, no attention"),
    "dcmh": (("--loss=dcmh", "--attention=none", "--center_weight=0"),
             "DCMH-style loss, no attention"),
    FLOOR: (None, "linear floor: ridge + projection + sign, on the DAAH run's inputs"),
}
LABELS = {name: label for name, (_, label) in METHODS.items()}
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
    parser.add_argument("--name", default=None,
                        help="Names the run directories and the flagfile, "
                             "flags/<NAME>_<bits>bit.cfg (default: the dataset).")
    parser.add_argument("--bits", default="16,32,64", help="Code lengths, comma-separated.")
    parser.add_argument("--seeds", default="0,1,2",
                        help="Seeds, comma-separated: each a separate run of every cell.")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"Comma-separated, of: {', '.join(METHODS)}.")
    parser.add_argument("--epochs", type=int, default=None,
                        help="Training epochs of every cell (default: the flagfile's).")
    parser.add_argument("--runs_dir", default=os.path.join("runs", "report"),
                        help="Run directories go to RUNS_DIR/<name>/<method>_<bits>bit/seed<S>.")
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
    try:
        args.seeds = report_seeds.parse_seeds(args.seeds)
    except ValueError:
        raise ReportError(f"--seeds takes integers >= 0, e.g. 0,1,2; got {args.seeds!r}") from None
    if FLOOR in args.methods and "daah" not in args.methods:
        raise ReportError("--methods: floor is computed on the daah runs; add daah")
    args.name = args.name or args.dataset
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


def flagfile_for(dataset, bits, name=None):
    """The flagfile every cell of `dataset` starts from (absolute path); ReportError if none."""
    name = name or dataset
    file = "demo.cfg" if dataset == "synthetic" else f"{name}_{bits}bit.cfg"
    path = os.path.join(REPO_ROOT, "flags", file)
    if not os.path.exists(path):
        raise ReportError(f"no flagfile for --dataset={dataset} --name={name} at {bits} bits: "
                          f"{path} is missing")
    return path


def run_dir(args, method, bits, seed):
    return os.path.join(args.runs_dir, args.name, f"{method}_{bits}bit", f"seed{seed}")


def train_command(args, method, bits, seed):
    """The argv that trains one cell (see the module docstring for the order of flags)."""
    flagfile = flagfile_for(args.dataset, bits, args.name)
    command = [sys.executable, "-m", "daah_tf.train", f"--flagfile={flagfile}", "--verbose=2",
               *args.extra_flags, *METHODS[method][0], f"--seed={seed}", f"--bits={bits}"]
    if args.epochs is not None:
        command.append(f"--epochs={args.epochs}")
    command.append(f"--model_dir={run_dir(args, method, bits, seed)}")
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


def run_cell(args, method, bits, seed, position, total, print_fn=print):
    """Trains one cell, or reuses its finished run.

    Returns a dict: method, bits, seed, model_dir, command (str), status ("reused", "trained"
    or "failed"), metrics (dict or None), config (the run's config.json dict or None),
    statistics (last-epoch attended shares and bit balances), seconds.
    """
    model_dir = run_dir(args, method, bits, seed)
    command = train_command(args, method, bits, seed)
    cell = {"method": method, "bits": bits, "seed": seed, "model_dir": model_dir,
            "command": display_command(command), "metrics": None, "config": None,
            "statistics": {}, "seconds": 0.0}
    metrics_path = os.path.join(model_dir, METRICS_FILE)
    label = f"[{position}/{total}] {method} {bits} bits seed {seed}"
    if os.path.exists(metrics_path):
        cell["status"] = "reused"
        print_fn(f"{label}: reusing {model_dir} (metrics.json exists; not retrained)")
    else:
        os.makedirs(model_dir, exist_ok=True)
        log_path = os.path.join(model_dir, TRAIN_LOG_FILE)
        print_fn(f"{label}: training into {model_dir} (log: {log_path})", flush=True)
        returncode, cell["seconds"] = report_seeds.run_logged(command, log_path, append=True)
        if returncode != 0 or not os.path.exists(metrics_path):
            cell["status"] = "failed"
            print_fn(f"{label}: training FAILED (exit status {returncode}); last lines of "
                     f"{log_path}:\n{_tail(log_path)}")
            return cell
        cell["status"] = "trained"
    cell["metrics"] = _read_json(metrics_path)
    config_path = os.path.join(model_dir, CONFIG_FILE)
    cell["config"] = _read_json(config_path) if os.path.exists(config_path) else None
    cell["statistics"] = report_seeds.last_epoch_statistics(model_dir, cell["metrics"])
    epochs = configured_epochs(cell)
    if cell["status"] == "reused" and args.epochs is not None and epochs != args.epochs:
        print_fn(f"{label}: note: the reused run was configured for {epochs} epochs, not "
                 f"--epochs={args.epochs}; delete {model_dir} to retrain it")
    metrics = cell["metrics"]
    done = f" in {cell['seconds']:.0f} s" if cell["status"] == "trained" else ""
    print_fn(f"{label}: {cell['status']}{done}: mAP I->T {metrics['i2t_map']:.4f} "
             f"T->I {metrics['t2i_map']:.4f} (chance {metrics['chance_map']:.4f})", flush=True)
    return cell


# ----------------------------------------------------------------------------------------------
# PR curves from codes


def _metrics_stamp(model_dir):
    with open(os.path.join(model_dir, METRICS_FILE), "rb") as stream:
        return hashlib.sha1(stream.read()).hexdigest()


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
    # Restoring for inference leaves the checkpoint's save_counter unread, which TensorFlow
    # reports as a warning that means nothing here.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    run = Run.open(model_dir)
    run.restore()
    # The data depends on the data settings only; the split comes from each run's splits.json.
    data_key = json.dumps(json.loads(run.config.to_json())["data"], sort_keys=True)
    data_cache = {} if data_cache is None else data_cache
    if data_key not in data_cache:
        data_cache[data_key] = run.load_data()
    data = run.with_splits(data_cache[data_key])
    run.check_inputs(data)
    (query_rows, query), (db_rows, database) = run.encode_splits(data, "query", "database")
    return retrieval.pr_curves(query, data.labels[query_rows], database, data.labels[db_rows],
                               retrieval.CROSS_MODAL)


def pr_curves_for(cells, cache_path, print_fn=print):
    """PR curves of the finished cells, from the cache where the run is unchanged.

    Returns {method: curves (see compute_pr_curves)}; updates the cache file atomically.
    """
    cache = _read_json(cache_path) if os.path.exists(cache_path) else {}
    results, data_cache, changed = {}, {}, False
    for cell in cells:
        if cell["metrics"] is None:
            continue
        # <method>_<B>bit/seed<S>: unique within the cache's folder.
        name = os.path.relpath(cell["model_dir"],
                               os.path.dirname(os.path.dirname(cell["model_dir"])))
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


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
        for bits in args.bits:
            flagfile_for(args.dataset, bits, args.name)  # every one exists before any training
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started_at = datetime.datetime.now().astimezone().strftime("%a %d %b %Y %H:%M:%S %Z")
    command_line = shlex.join(["python", "tools/report.py", *argv])
    trained = [m for m in args.methods if m != FLOOR]
    grid = [(m, b, s) for b in args.bits for s in args.seeds for m in trained]
    cells = [run_cell(args, method, bits, seed, position, len(grid))
             for position, (method, bits, seed) in enumerate(grid, 1)]
    if FLOOR in args.methods:
        cells += [report_seeds.floor_cell(c) for c in list(cells) if c["method"] == "daah"]
    largest = max(args.bits)
    cache_path = os.path.join(args.runs_dir, args.name, "pr_curves.json")
    curves = pr_curves_for([c for c in cells if c["bits"] == largest and c["method"] != FLOOR
                            and c["seed"] == args.seeds[0]], cache_path)
    figure_path = None
    if curves:
        chance = report_output.chance_level(cells, trained, largest)
        figure_path = report_output.plot_pr_curves(curves, trained, LABELS, args.name, largest,
                                                   args.figure, chance)
    text = report_output.report_markdown(args, cells, LABELS, command_line, figure_path,
                                         started_at)
    atomic_write_bytes(args.out, text.encode())
    print(f"Wrote {args.out}" + (f" and {figure_path}" if figure_path else ""))
    failed = [f"{c['method']}_{c['bits']}bit/seed{c['seed']}" for c in cells
              if c["status"] == "failed"]
    if failed:
        print(f"error: {len(failed)} cell(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
