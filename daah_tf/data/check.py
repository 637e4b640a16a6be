"""Checks a dataset and prints what a reader makes of it.

    python -m daah_tf.data.check --dataset=folder --data_dir=DIR [--skip_bad_rows]
        [--verify_images] [--seed=0] [--max_bad_rows=100]

Prints pairs per split, label frequencies, image kind and shape, text kind and dimension (for
raw text, the number of distinct whitespace tokens) and the bad rows found. On bad rows of a
folder dataset it lists every one (FILE:ROW: reason, up to --max_bad_rows) so that a dataset
is fixed in one pass, and exits with status 1 (with --skip_bad_rows: lists them and goes on).
Other bad data exits with status 1 and the DatasetError's message (no traceback); with
--verify_images, also when an image file does not decode.
"""

import os
import sys
import warnings

from absl import app, flags

from daah_tf.data.base import DatasetError
from daah_tf.data.registry import DATASETS, load_dataset


def define_flags(flag_values=flags.FLAGS):
    """Defines this command's flags. Called when the command runs, not on import, so that the
    module can be imported next to the training flags (same names) without a clash."""
    flags.DEFINE_enum("dataset", "synthetic", DATASETS, "Dataset to check.",
                      flag_values=flag_values)
    flags.DEFINE_string("data_dir", None, "The dataset's folder (not needed for synthetic).",
                        flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Seed of the protocol split.", flag_values=flag_values)
    flags.DEFINE_bool("skip_bad_rows", False, "folder: skip bad rows instead of failing.",
                      flag_values=flag_values)
    flags.DEFINE_bool("verify_images", False,
                      "Decode every image file (slow: minutes for 20,000 photos).",
                      flag_values=flag_values)
    flags.DEFINE_integer("max_bad_rows", 100, "List at most this many bad rows.", lower_bound=1,
                         flag_values=flag_values)


def _image_lines(dataset):
    if dataset.image_kind != "paths":
        return [f"images: {dataset.image_kind}, shape {dataset.image_shape}, "
                f"dtype {dataset.images.dtype}"]
    from daah_tf.data.folder import missing_files
    missing = len(missing_files(dataset.images))
    return [f"images: paths, {len(dataset.images)} files, {missing} missing"]


def _text_lines(dataset):
    if dataset.text_kind == "bow":
        return [f"texts: bow, dimension {dataset.texts.shape[1]}"]
    tokens = {token for text in dataset.texts for token in str(text).split()}
    return [f"texts: raw, {len(tokens)} distinct whitespace tokens"]


def bad_row_lines(dataset, source, cap):
    """One line per bad row, "FILE:ROW: reason", at most `cap` (then a line with the rest)."""
    rows = dataset.extras.get("skipped_rows", [])
    lines = [f"  {source}:{line}: {reason}" for line, reason in rows[:cap]]
    if len(rows) > cap:
        lines.append(f"  ... and {len(rows) - cap} more (see them with --max_bad_rows)")
    return lines


def summarize(dataset, cap=20):
    """The summary's lines (list of str)."""
    lines = [f"dataset: {dataset.name}, {len(dataset)} pairs"]
    lines += [f"  {split}: {len(dataset.splits[split])}" for split in
              ("query", "database", "train")]
    lines += _image_lines(dataset) + _text_lines(dataset)
    counts = dataset.labels.sum(axis=0)
    lines.append(f"labels: {len(dataset.label_names)}")
    width = max((len(str(name)) for name in dataset.label_names), default=0)
    lines += [f"  {str(name):<{width}}  {int(count)}"
              for name, count in zip(dataset.label_names, counts, strict=True)]
    lines.append(f"bad rows: {dataset.extras.get('bad_rows', 0)}")
    lines += [f"  line {line}: {reason}" for line, reason in
              dataset.extras.get("skipped_rows", [])[:cap]]
    return lines


def _undecodable_lines(dataset):
    """Lines about image files that do not decode (paths datasets other than folder, whose
    reader checks them itself)."""
    if dataset.image_kind != "paths" or dataset.name == "folder":
        return []
    from daah_tf.data.folder import missing_files, verify_images
    absent = set(missing_files(dataset.images).tolist())
    present = [path for index, path in enumerate(dataset.images) if index not in absent]
    failures = [reason for reason in verify_images(present) if reason]
    return [f"undecodable images: {len(failures)}"] + [f"  {reason}" for reason in failures[:20]]


def run(argv):
    """The command; returns the exit status."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    options = flags.FLAGS
    # A folder's reader can skip bad rows and say which: read them all, then judge.
    collect = options.dataset == "folder" and not options.skip_bad_rows
    try:
        with warnings.catch_warnings():
            if collect:  # its "skipped N bad rows" warning is not what happens here
                warnings.simplefilter("ignore")
            dataset = load_dataset(options.dataset, options.data_dir, seed=options.seed,
                                   skip_bad_rows=options.skip_bad_rows or collect,
                                   verify_images=options.verify_images)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    bad = dataset.extras.get("skipped_rows", [])
    if collect and bad:
        source = os.path.join(os.path.abspath(options.data_dir), "pairs.jsonl")
        print(f"error: {len(bad)} bad row(s) in {source}; fix them, or skip them with "
              "--skip_bad_rows:", file=sys.stderr)
        print("\n".join(bad_row_lines(dataset, source, options.max_bad_rows)), file=sys.stderr)
        return 1
    print("\n".join(summarize(dataset, options.max_bad_rows)))
    if options.verify_images:
        undecodable = _undecodable_lines(dataset)
        print("\n".join(undecodable))
        if undecodable and undecodable[0] != "undecodable images: 0":
            return 1
    return 0


def main():
    define_flags()
    app.run(run)


if __name__ == "__main__":
    main()
