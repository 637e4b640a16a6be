"""Runs a list of `python -m daah_tf.train` commands one after another and prints a Markdown
table: each row's mAP@all (query vs database), best epoch, the last epoch's attended shares
(image / text) and bit balance of the codes (image / text; 1 = every bit constant over a batch),
wall time, and the exact command.

    python tools/sweep.py --preset=attention_lr --data_dir=../shared/data/wiki [--runs_dir=DIR]
    python tools/sweep.py --preset=dcmh_weights --data_dir=../shared/data/wiki
    python tools/sweep.py --preset=attention_gradient

Presets (every flag that the claim is about is spelled out, not left to a default):
    attention_lr        the paper-literal game on Wiki 16 bits (60 epochs) at attention learning
                        rates 1e-3, 1e-4, 1e-5
    dcmh_weights        the DCMH-style baseline on Wiki 16 bits, 20 epochs, at
                        (quantization, balance) weights (1, 1), (1, 0), (0, 1), (0.1, 0.1)
    attention_gradient  synthetic data (flags/demo.cfg), 6 epochs, --attention_gradient
                        unattended vs both, under the default game and the paper-literal one

A row whose directory already holds metrics.json is reused, not retrained (delete it to
retrain). Runs go one at a time: they share the machine's cores.
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from daah_tf.run import METRICS_FILE  # noqa: E402  (no TensorFlow behind it)

# The paper's game, whatever the defaults: every deviation of docs/design.md set back.
LITERAL = ("--mask_estimator=probability", "--attention_objective=adversarial",
           "--retrieval_view=attended", "--adversarial_weight=1", "--attention_schedule=constant",
           "--notext_linear_path", "--center_weight=0")
DEFAULT_GAME = ("--mask_estimator=logit", "--attention_objective=adversarial_retrieval")
WIKI = ("--flagfile=flags/wiki_16bit.cfg",)
DEMO = ("--flagfile=flags/demo.cfg", "--epochs=6")

# preset: (needs --data_dir, [(row name, flags)])
PRESETS = {
    "attention_lr": (True, [
        (f"literal, attention lr {lr}", WIKI + LITERAL + (f"--attention_learning_rate={lr}",))
        for lr in ("1e-3", "1e-4", "1e-5")]),
    "dcmh_weights": (True, [
        (f"dcmh q={q} b={b}", WIKI + ("--loss=dcmh", "--attention=none", "--center_weight=0",
                                      "--epochs=20",
                                      f"--dcmh_quantization_weight={q}",
                                      f"--dcmh_balance_weight={b}"))
        for q, b in (("1", "1"), ("1", "0"), ("0", "1"), ("0.1", "0.1"))]),
    "attention_gradient": (False, [
        (f"{game_name}, gradient {gradient}", DEMO + game + (f"--attention_gradient={gradient}",))
        for game_name, game in (("default game", DEFAULT_GAME), ("literal game", LITERAL))
        for gradient in ("unattended", "both")]),
}


def last_logged(log_text, name):
    """The last value Keras printed for a metric (train, not val_), or None."""
    values = re.findall(rf"(?<![\w]){name}: ([-+0-9.eE]+|nan)", log_text)
    return float(values[-1]) if values else None


def run_row(name, row_flags, data_dir, runs_dir, index):
    model_dir = os.path.join(runs_dir, f"{index:02d}")
    command = ["python", "-m", "daah_tf.train", *row_flags]
    shown = " ".join(command + ([f"--data_dir={data_dir}"] if data_dir else []))
    # --model_dir and --verbose are left out of the shown command: they do not change numbers.
    if data_dir:
        command.append(f"--data_dir={os.path.abspath(data_dir)}")
    command += [f"--model_dir={model_dir}", "--verbose=2"]
    metrics_path = os.path.join(model_dir, METRICS_FILE)
    log_path = os.path.join(model_dir + ".log")
    reused = os.path.exists(metrics_path)
    if not reused:
        print(f"[{index}] {shown}", file=sys.stderr, flush=True)
        with open(log_path, "w") as log:
            subprocess.run([sys.executable, *command[1:]], cwd=REPO_ROOT, stdout=log,
                           stderr=subprocess.STDOUT, check=True)
    with open(metrics_path) as handle:
        metrics = json.load(handle)
    log_text = open(log_path).read() if os.path.exists(log_path) else ""
    logged = {f"{what}_{modality}": last_logged(log_text, f"{what}_{modality}")
              for what in ("attended_fraction", "bit_balance") for modality in ("image", "text")}
    return dict(name=name, command=shown, reused=reused, metrics=metrics, **logged)


def table(rows):
    def pair(row, what):
        values = [row[f"{what}_{modality}"] for modality in ("image", "text")]
        return "-" if None in values else " / ".join(f"{v:.2f}" for v in values)

    lines = ["| row | I->T | T->I | chance | best epoch | attended (image / text) "
             "| bit balance (image / text) | seconds | command |",
             "|---|---:|---:|---:|---:|---|---|---:|---|"]
    for row in rows:
        m = row["metrics"]
        lines.append(
            f"| {row['name']} | {m['i2t_map']:.4f} | {m['t2i_map']:.4f} | {m['chance_map']:.4f} "
            f"| {m['best_epoch']} | {pair(row, 'attended_fraction')} "
            f"| {pair(row, 'bit_balance')} | {m.get('seconds', '-')}"
            f"{' (reused)' if row['reused'] else ''} | `{row['command']}` |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--data_dir", default=None, help="the dataset folder (Wiki presets)")
    parser.add_argument("--runs_dir", default="runs/sweep")
    args = parser.parse_args(argv)
    needs_data, rows = PRESETS[args.preset]
    if needs_data and not args.data_dir:
        parser.error(f"--preset={args.preset} needs --data_dir (the Wiki folder)")
    runs_dir = os.path.join(os.path.abspath(args.runs_dir), args.preset)
    os.makedirs(runs_dir, exist_ok=True)
    results = [run_row(name, row_flags, args.data_dir if needs_data else None, runs_dir, i)
               for i, (name, row_flags) in enumerate(rows)]
    print(f"python tools/sweep.py --preset={args.preset}"
          + (f" --data_dir={shlex.quote(args.data_dir)}" if needs_data else ""))
    print(table(results))


if __name__ == "__main__":
    main()
