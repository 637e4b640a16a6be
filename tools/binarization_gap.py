"""python tools/binarization_gap.py --model_dir=DIR [--checkpoint=best|latest] [--data_dir=DIR]

How much a trained run's retrieval loses to binarisation. For I->T and T->I (query vs database,
mAP@all) it prints the mAP of the binary codes sign(H), ranked by Hamming distance (what
`daah_tf.evaluate` reports), next to the mAP of the real-valued codes H, ranked by Euclidean
distance (what the ranking losses of design.md train), and, per modality, the share of code
entries with |H| < 0.5 (far from their binary value).

The ranking losses compare Euclidean distances with a fixed margin, which long codes can meet
with small |H|; sign(H) then keeps or drops what the real codes held by an amount that varies
from seed to seed (README "Results": Wiki 64 bits). `--quantization_weight` pulls the codes
towards sign(H).

Reads the run directory; writes nothing.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from daah_tf import losses, metrics  # noqa: E402
from daah_tf.run import Run, RunError, split_rows  # noqa: E402

DIRECTIONS = {"I->T": ("image", "text"), "T->I": ("text", "image")}
FAR_FROM_BINARY = 0.5  # |H| below this counts as far from its binary value



def euclidean_average_precision(query_codes, db_codes, query_labels, db_labels):
    """AP@all of every query, ranking the database by Euclidean distance of real-valued codes.

    Args:
        query_codes: (Q, q) float codes H.
        db_codes: (N, q) float codes H.
        query_labels: (Q, L) multi-hot; db_labels: (N, L) multi-hot. Relevant: a shared label.

    Returns:
        (Q,) float64; 0 for a query without a relevant database item. Equal distances keep
        database order (real-valued distances rarely tie).
    """
    query_codes = np.asarray(query_codes, np.float64)
    db_codes = np.asarray(db_codes, np.float64)
    squared = ((query_codes ** 2).sum(1)[:, None] + (db_codes ** 2).sum(1)[None, :]
               - 2.0 * query_codes @ db_codes.T)
    relevant = metrics.relevance(query_labels, db_labels)
    order = np.argsort(squared, axis=1, kind="stable")
    ranked = np.take_along_axis(relevant, order, axis=1)
    hits = np.cumsum(ranked, axis=1)
    precision = hits / np.arange(1, ranked.shape[1] + 1)
    return (precision * ranked).sum(1) / np.maximum(ranked.sum(1), 1)


def real_codes(run, data, rows):
    """{"image": (n, q), "text": (n, q)} float32 real-valued codes H of `rows`, in row order,
    through the restored model (`run.restore()` first)."""
    codes = {"image": [], "text": []}
    for batch in run.batches(data, rows):
        codes["image"].append(np.asarray(run.model.encode_image(batch["image"]), np.float32))
        codes["text"].append(np.asarray(run.model.encode_text(batch["text"]), np.float32))
    return {modality: np.concatenate(parts) for modality, parts in codes.items()}


def binarization_gap(query, database, query_labels, db_labels):
    """The numbers this tool prints, from real-valued codes.

    Args:
        query, database: {"image": (n, q), "text": (n, q)} float codes H of the two splits.
        query_labels, db_labels: (n, L) multi-hot labels of the two splits.

    Returns:
        {"I->T": {"binary": mAP, "real": mAP}, "T->I": {...},
         "far_from_binary": {"image": share, "text": share}} (shares over both splits).
    """
    report = {}
    for name, (source, target) in DIRECTIONS.items():
        binary = metrics.mean_average_precision(
            losses.binary_codes(query[source]).numpy(),
            losses.binary_codes(database[target]).numpy(), query_labels, db_labels)
        real = euclidean_average_precision(query[source], database[target], query_labels,
                                           db_labels).mean()
        report[name] = {"binary": float(binary), "real": float(real)}
    report["far_from_binary"] = {
        modality: float(np.mean(np.abs(np.concatenate([query[modality], database[modality]]))
                                < FAR_FROM_BINARY))
        for modality in ("image", "text")}
    return report


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="What binarisation costs a trained run: mAP of sign(H) and of H.")
    parser.add_argument("--model_dir", required=True, help="A trained run's directory.")
    parser.add_argument("--checkpoint", choices=("best", "latest"), default="best",
                        help="Which checkpoint's weights to use.")
    parser.add_argument("--data_dir", help="Where the run's dataset is, if not where it trained.")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run = Run.open(args.model_dir)
        run.restore(args.checkpoint)
        data = run.load_data(data_dir=args.data_dir)
        splits = {name: split_rows(data, name) for name in ("query", "database")}
    except (RunError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    codes = {name: real_codes(run, data, rows) for name, rows in splits.items()}
    report = binarization_gap(codes["query"], codes["database"],
                              data.labels[splits["query"]], data.labels[splits["database"]])
    print(f"{args.model_dir}: query {len(splits['query'])} vs database "
          f"{len(splits['database'])}, mAP@all")
    for name in DIRECTIONS:
        binary, real = report[name]["binary"], report[name]["real"]
        print(f"  {name}  binary sign(H), Hamming {binary:.4f}   real H, Euclidean {real:.4f}"
              f"   binary - real {binary - real:+.4f}")
    shares = report["far_from_binary"]
    print(f"  entries with |H| < {FAR_FROM_BINARY}: image {shares['image']:.1%}, "
          f"text {shares['text']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
