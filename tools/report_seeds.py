"""Seeds, the same-run linear floor and the mean +- std tables of tools/report.py.

A report cell is one (method, bits, seed). The tables aggregate a (method, bits) over its seeds:
mean +- sample standard deviation (n - 1), with "(n=K)" where fewer seeds than asked finished.
The `floor` pseudo-method is tools/linear_floor.py on the DAAH run of the same bits and seed (its
splits, its input features, its text featurizer; projection seed = the run's seed), kept in
<daah run>/linear_floor.json and reused while that file is newer than the run's metrics.json.
The attended shares and bit balances are the last epoch's training values, read from the run's
metrics.json where it holds them, else from the Keras progress lines of its train.log.
`run_logged` runs a cell's subprocess (training, or the floor) into the cell's log file.
"""

import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

from daah_tf.run import LINEAR_FLOOR_FILE, METRICS_FILE, SPLITS_FILE, TRAIN_LOG_FILE

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
FLOOR = "floor"
# Last-epoch statistics of a run (training batches; TensorBoard shows the same curves).
LOG_STATISTICS = ("attended_fraction_image", "attended_fraction_text",
                  "bit_balance_image", "bit_balance_text")
_NUMBER = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))"


def parse_seeds(text):
    """"0,1,2" -> [0, 1, 2] (sorted, unique); ValueError on anything else or none."""
    seeds = sorted({int(s) for s in text.split(",") if s.strip()})
    if not seeds or min(seeds) < 0:
        raise ValueError(text)
    return seeds


def last_epoch_statistics(model_dir, metrics=None):
    """{name: float} of LOG_STATISTICS at the run's last epoch (absent names: not logged).

    metrics.json wins where it has the value; otherwise the last `name: value` of train.log
    that is not a `val_` value.
    """
    found = {}
    try:
        with open(os.path.join(model_dir, TRAIN_LOG_FILE), encoding="utf-8",
                  errors="replace") as stream:
            text = stream.read()
    except OSError:
        text = ""
    for name in LOG_STATISTICS:
        values = re.findall(rf"(?<![\w]){name}: {_NUMBER}", text)
        if values:
            found[name] = float(values[-1])
    for name in LOG_STATISTICS:
        if metrics and isinstance(metrics.get(name), (int, float)):
            found[name] = float(metrics[name])
    return found


def run_logged(command, log_path, append=False):
    """Runs argv ``command`` with stdout and stderr to ``log_path``: (exit status, seconds).

    The subprocess imports this checkout's daah_tf whatever the caller's cwd. ``append``: add to
    the log after a `$ command` line (a resumed run keeps the earlier output); else overwrite it.
    """
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.path.dirname(TOOLS_DIR), environment.get("PYTHONPATH")) if p)
    started = time.time()
    with open(log_path, "a" if append else "w", encoding="utf-8") as log:
        if append:
            log.write(f"$ {shlex.join(command)}\n")
            log.flush()
        returncode = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT,
                                     env=environment)
    return returncode, time.time() - started


def floor_cell(daah_cell, print_fn=print):
    """The `floor` cell of one finished DAAH cell (see the module docstring).

    Returns a cell dict like report.run_cell's: method "floor", status "reused", "computed"
    or "failed", metrics the floor's mAPs (or None), config the DAAH run's.
    """
    model_dir, seed = daah_cell["model_dir"], daah_cell["seed"]
    cell = {"method": FLOOR, "bits": daah_cell["bits"], "seed": seed, "model_dir": model_dir,
            "command": f"python tools/linear_floor.py --model_dir={model_dir} --seed={seed}",
            "metrics": None, "config": daah_cell["config"], "seconds": 0.0, "statistics": {}}
    label = f"floor {daah_cell['bits']} bits seed {seed}"
    if daah_cell["metrics"] is None:
        cell["status"] = "failed"
        print_fn(f"{label}: skipped, its DAAH run did not finish")
        return cell
    path = os.path.join(model_dir, LINEAR_FLOOR_FILE)
    metrics_path = os.path.join(model_dir, METRICS_FILE)
    if os.path.exists(path) and os.path.getmtime(path) >= os.path.getmtime(metrics_path):
        with open(path, encoding="utf-8") as stream:
            saved = json.load(stream)
        if saved.get("seed") == seed:
            cell.update(status="reused", metrics=saved)
            print_fn(f"{label}: reusing {path}")
            return cell
    print_fn(f"{label}: ridge + projection on the inputs of {model_dir}", flush=True)
    # A subprocess: linear_floor defines absl flags that daah_tf.flags also defines.
    command = [sys.executable, os.path.join(TOOLS_DIR, "linear_floor.py"),
               f"--model_dir={model_dir}", f"--seed={seed}"]
    log_path = os.path.join(model_dir, "linear_floor.log")
    returncode, cell["seconds"] = run_logged(command, log_path)
    if returncode != 0 or not os.path.exists(path):
        cell["status"] = "failed"
        print_fn(f"{label}: FAILED (exit status {returncode}); see {log_path}")
        return cell
    with open(path, encoding="utf-8") as stream:
        cell.update(status="computed", metrics=json.load(stream))
    return cell


def mean_std(values):
    """(mean, sample std or None for a single value, count) of the finite values; None if none."""
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else None
    return statistics.fmean(values), std, len(values)


def fmt_mean_std(values, expected, digits=4):
    """"0.2500 ± 0.0120" (n < expected: " (n=K)" added), "0.2500" for one value, "n/a"."""
    summary = mean_std(values)
    if summary is None:
        return "n/a"
    mean, std, count = summary
    text = f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"
    return text + (f" (n={count})" if count < expected else "")


def _values(cells, method, bits, key, source="metrics"):
    return [(cell[source] or {}).get(key) for cell in cells
            if cell["method"] == method and cell["bits"] == bits and cell["metrics"]]


def map_table(cells, methods, bits_list, labels, seeds, directions):
    """Markdown lines: rows methods (and chance), columns I->T and T->I per code length, each
    cell the mean ± std over the seeds."""
    header = "| method | " + " | ".join(f"{b} bits {label}" for b in bits_list
                                         for label in directions.values()) + " |"
    lines = [header, "|---|" + "---:|" * (2 * len(bits_list))]
    for method in methods:
        values = [fmt_mean_std(_values(cells, method, b, f"{d}_map"), len(seeds))
                  for b in bits_list for d in directions]
        lines.append(f"| {labels[method]} (`{method}`) | " + " | ".join(values) + " |")
    chance = []
    for b in bits_list:
        values = [v for m in methods for v in _values(cells, m, b, "chance_map")]
        chance += [fmt_mean_std(values[:1], 1)] * 2  # the same for every method and seed
    lines.append("| chance (random ranking) | " + " | ".join(chance) + " |")
    return lines


def paired_differences(cells, method, bits, key, reference="daah"):
    """Per-seed differences reference - method of one metric, over the seeds where both ran:
    a list of floats in seed order (empty if they share no seed)."""
    def by_seed(name):
        return {cell["seed"]: cell["metrics"].get(key) for cell in cells
                if cell["method"] == name and cell["bits"] == bits and cell["metrics"]}
    ours, theirs = by_seed(reference), by_seed(method)
    return [float(ours[seed]) - float(theirs[seed]) for seed in sorted(ours.keys() & theirs.keys())
            if ours[seed] is not None and theirs[seed] is not None]


def fmt_paired(differences, digits=4):
    """"+0.0050 ± 0.0030 (5/8)": mean difference ± its standard error (sample std / sqrt(n)),
    and in how many seeds the difference is >= 0; "n/a" without seeds."""
    if not differences:
        return "n/a"
    mean = statistics.fmean(differences)
    wins = sum(d >= 0 for d in differences)
    count = f"({wins}/{len(differences)})"
    if len(differences) < 2:
        return f"{mean:+.{digits}f} {count}"
    error = statistics.stdev(differences) / math.sqrt(len(differences))
    return f"{mean:+.{digits}f} ± {error:.{digits}f} {count}"


def paired_table(cells, methods, bits_list, labels, directions, reference="daah"):
    """Markdown lines: DAAH minus each other method, seed by seed (the same seed gives both
    runs the same validation pairs and, on a fixed-protocol dataset, the same split), as
    `fmt_paired`; no lines when the report has no DAAH row or nothing to compare it with."""
    if reference not in methods:
        return []
    rows = {m: [paired_differences(cells, m, b, f"{d}_map", reference)
                for b in bits_list for d in directions]
            for m in methods if m != reference}
    rows = {m: differences for m, differences in rows.items() if any(differences)}
    if not rows:
        return []
    header = "| DAAH minus | " + " | ".join(f"{b} bits {label}" for b in bits_list
                                            for label in directions.values()) + " |"
    lines = [header, "|---|" + "---:|" * (len(directions) * len(bits_list))]
    for method, differences in rows.items():
        lines.append(f"| {labels[method]} (`{method}`) | "
                     + " | ".join(fmt_paired(d) for d in differences) + " |")
    return lines


def diagnostics_table(cells, methods, bits_list, labels, seeds):
    """Markdown lines: last-epoch attended shares and bit balances, the selected model's
    attended shares on the query set (runs that record them), and the mask / object IoU
    where the dataset has object boxes, beside a random mask of the same size, the mask of every
    cell an object touches and the best mask of these cells (diagnostics.reference_cell_ious)."""
    # Columns from metrics.json, each group shown when some run has it: (key, title).
    groups = (
        (("attended_share_image", "selected model: attended image (query)"),
         ("attended_share_text", "selected model: attended text (query)")),
        (("mask_iou", "mask / object IoU"), ("random_mask_iou", "random mask IoU"),
         ("touched_cells_iou", "every touched cell IoU"),
         ("best_cells_iou", "best cell mask IoU")),
    )
    columns = [column for group in groups
               if any(group[0][0] in (c["metrics"] or {}) for c in cells) for column in group]
    header = ("| method | bits | attended image | attended text | bit balance image | "
              "bit balance text |" + "".join(f" {title} |" for _, title in columns))
    lines = [header, "|---|---:|" + "---:|" * (len(LOG_STATISTICS) + len(columns))]
    for bits in bits_list:
        for method in methods:
            if method == FLOOR or not _values(cells, method, bits, "i2t_map"):
                continue
            row = [fmt_mean_std(_values(cells, method, bits, name, "statistics"), len(seeds), 3)
                   for name in LOG_STATISTICS]
            row += [fmt_mean_std(_values(cells, method, bits, key), len(seeds), 3)
                    for key, _ in columns]
            lines.append(f"| {labels[method]} (`{method}`) | {bits} | " + " | ".join(row) + " |")
    return lines


def split_note(cells):
    """One sentence: whether the query and database splits are the same in every seed's run."""
    by_seed = {}
    for cell in cells:
        path = os.path.join(cell["model_dir"], SPLITS_FILE)
        if cell["method"] == FLOOR or cell["metrics"] is None or not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as stream:
            splits = json.load(stream)
        by_seed.setdefault(cell["seed"], (splits.get("query"), splits.get("database")))
    if len(by_seed) < 2:
        return ""
    same = len({json.dumps(value) for value in by_seed.values()}) == 1
    return ("The query and database splits are identical in every seed's runs (the dataset's "
            "fixed protocol): the seed changes only the weights, the batch order and the "
            "validation pairs carved from the training split." if same else
            "The query and database splits differ between seeds (the dataset draws them from "
            "the seed, as synthetic data does with the data itself): the spread includes the "
            "split.")
