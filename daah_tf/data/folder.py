"""A user's own data: a folder with `pairs.jsonl`, one image/text pair per line.

    DIR/pairs.jsonl
      {"image": "photos/0001.jpg", "text": "free text, any language", "labels": ["dog", "beach"],
       "split": "train"}

Fields:
    image: path of an image file, relative to DIR (or absolute, but inside DIR). Paths are
        normalised lexically and must stay inside DIR: "../x.jpg" is a bad row. Symbolic links
        inside DIR are followed on purpose (a `photos -> /big/disk/photos` link works).
    text: free text, any language, non-empty.
    labels: non-empty list of label strings; surrounding whitespace is stripped, case matters.
        Labels become multi-hot columns over the sorted set of all label strings.
    split: optional, "query" (only ever a query), "database" (retrieved, never trained on) or
        "train" (trained on and also part of the database). Either every row has one or none
        does; without splits: 10% query, the rest database, half of the database train (the
        shape of the MIRFLICKR-25K protocol), drawn from the seed. Rows with the same image file
        (one photo, several captions) are one picture: its pairs are all queries or all
        database, and the validation split (`daah_tf.data.splits.carve_validation`) takes or
        leaves them together, so that no photo is both trained on and queried.

Other keys are ignored; blank lines are skipped.

Bad rows (invalid JSON or UTF-8, missing keys, wrong types, empty text or labels, a path escaping
DIR, a missing image file, an unknown split; with `verify_images`, an image that does not decode)
raise a DatasetError naming the file and line; with `skip_bad_rows` they are skipped with a
warning, and counted in extras["bad_rows"] (details in extras["skipped_rows"]).
"""

import concurrent.futures
import json
import os
import warnings

import numpy as np
from PIL import Image

from daah_tf.data.base import SPLITS, DatasetError, PairedDataset
from daah_tf.data.splits import random_protocol_split, whole_groups

PAIRS_FILE = "pairs.jsonl"
QUERY_FRACTION = 0.1
TRAIN_FRACTION_OF_DATABASE = 0.5
_REQUIRED = ("image", "text", "labels")


class _BadRow(Exception):
    """One row's problem; becomes a DatasetError or a skipped row."""


# --------------------------------------------------------------------------------------------
# Paths and image files
# --------------------------------------------------------------------------------------------

def resolve_inside(root, relative):
    """The absolute, normalised path of `relative` under `root`.

    Args:
        root: the data folder.
        relative: a path relative to it (or absolute inside it).

    Raises:
        ValueError when the path escapes `root` ("../x", "/etc/x") or is `root` itself.
    """
    root = os.path.abspath(root)
    path = os.path.normpath(os.path.join(root, relative))
    # a prefix test on normalised absolute paths (cheaper than commonpath for 200,000 rows)
    inside = root if root.endswith(os.sep) else root + os.sep
    if not path.startswith(inside):
        raise ValueError(f"image path {relative!r} is outside the data folder {root}")
    return path


def missing_files(paths):
    """Indices of the paths that are not existing files: (k,) int64."""
    return np.asarray([index for index, path in enumerate(paths) if not os.path.isfile(path)],
                      dtype=np.int64)


def _decode_failure(path):
    """Why an image file does not decode, or None when it does."""
    try:
        with Image.open(path) as image:
            image.verify()  # structure and checksums (PNG CRCs), without decoding pixels
        with Image.open(path) as image:  # verify() leaves the image unusable: open again
            image.load()  # a full decode: catches truncated JPEG data that verify() lets by
    except MemoryError:
        raise
    except Exception as error:
        # PIL reports bad files with many exception types (UnidentifiedImageError, OSError,
        # SyntaxError, ValueError, struct.error, DecompressionBombError): all mean "bad file".
        return f"image {path} does not decode ({type(error).__name__}: {error})"
    return None


def verify_images(paths, workers=None):
    """Checks that image files decode (PIL `verify()`, then a full `load()`).

    Slow (a full decode of every file: minutes for 20,000 photos), so readers only call it when
    asked. Decoding releases the GIL, so threads help.

    Args:
        paths: image file paths.
        workers: threads; default min(8, CPU count).

    Returns:
        A list aligned with `paths`: None for a good file, else the reason it is bad.
    """
    workers = workers or min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_decode_failure, paths))


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------

def _string(value, field):
    """A str that encodes as UTF-8 (json allows lone surrogates, file systems and TF do not)."""
    if not isinstance(value, str):
        raise _BadRow(f"{field!r} must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _BadRow(f"{field!r} is not valid Unicode ({error.reason})") from error
    return value


def _image_path(value, root):
    relative = _string(value, "image")
    if not relative.strip() or "\x00" in relative:
        raise _BadRow("'image' is empty or holds a NUL character")
    try:
        path = resolve_inside(root, relative)
    except ValueError as error:
        raise _BadRow(str(error)) from error
    if not os.path.isfile(path):
        raise _BadRow(f"image file not found: {path}")
    return path


def _labels(value):
    if not isinstance(value, list):
        raise _BadRow(f"'labels' must be a list of strings, got {type(value).__name__}")
    labels = [_string(label, "labels").strip() for label in value]
    if not labels or not all(labels):
        raise _BadRow("'labels' is empty or holds an empty label")
    return tuple(sorted(set(labels)))


def _split(value):
    if value is None:
        return None
    if not isinstance(value, str) or value not in SPLITS:
        raise _BadRow(f"unknown split {value!r}; expected one of {', '.join(SPLITS)}")
    return value


def _parse_row(raw, line_number, root):
    """(image path, text, labels, split or None) of one pairs.jsonl line (bytes, no newline)."""
    try:
        text = raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
    except UnicodeDecodeError as error:
        raise _BadRow(f"not valid UTF-8 ({error.reason} at byte {error.start})") from error
    try:
        row = json.loads(text)
    except (ValueError, RecursionError) as error:  # RecursionError: absurdly deep nesting
        raise _BadRow(f"invalid JSON ({error})") from error
    if not isinstance(row, dict):
        raise _BadRow(f"expected a JSON object, got {type(row).__name__}")
    missing = [key for key in _REQUIRED if key not in row]
    if missing:
        raise _BadRow(f"missing key(s) {missing}")
    caption = _string(row["text"], "text")
    if not caption.strip():
        raise _BadRow("'text' is empty")
    labels, split = _labels(row["labels"]), _split(row.get("split"))
    return _image_path(row["image"], root), caption, labels, split


def _read_rows(path, root):
    """(rows, bad): rows = [(line, image, text, labels, split)], bad = [(line, reason)]."""
    try:
        with open(path, "rb") as handle:
            content = handle.read()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read ({error})") from error
    rows, bad = [], []
    for line_number, raw in enumerate(content.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            rows.append((line_number, *_parse_row(raw.rstrip(b"\r"), line_number, root)))
        except _BadRow as problem:
            bad.append((line_number, str(problem)))
    return rows, bad


def _undecodable(rows):
    """[(line, reason)] for rows whose image does not decode."""
    reasons = verify_images([row[1] for row in rows])
    return [(row[0], reason) for row, reason in zip(rows, reasons, strict=True) if reason]


def _handle_bad(path, bad, skip_bad_rows):
    """Raises on bad rows, or warns that they are skipped."""
    if not bad:
        return
    bad.sort()
    line, reason = bad[0]
    more = f" (and {len(bad) - 1} more bad row(s))" if len(bad) > 1 else ""
    if not skip_bad_rows:
        raise DatasetError(f"{path}:{line}: {reason}{more}; skip bad rows with --skip_bad_rows")
    warnings.warn(f"{path}: skipped {len(bad)} bad row(s); first: line {line}: {reason}",
                  stacklevel=3)


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------

def _given_splits(path, rows):
    """The splits the rows name: query; database = database + train rows; train."""
    names = np.asarray([row[4] for row in rows], dtype=object)
    splits = {"query": np.flatnonzero(names == "query"),
              "database": np.flatnonzero((names == "database") | (names == "train")),
              "train": np.flatnonzero(names == "train")}
    for needed in ("query", "train"):
        if not len(splits[needed]):
            raise DatasetError(f"{path}: no row has split {needed!r}; a dataset needs query and "
                               f"training rows (or leave out split everywhere)")
    return {name: index.astype(np.int64) for name, index in splits.items()}


def default_split(num_pairs, seed, groups=None):
    """Splits for rows without a split field: 10% query (at least 1), the rest database, half
    of the database (at least 1) train; {"query", "database", "train"} -> int64 indices.

    groups: optional (N,) int64 picture of every pair (`_image_groups`). When a picture has
    several captions its pairs are all queries or all database: a query photo that is also in
    the database (and trained on) would be found by memory, not by its codes.
    """
    if num_pairs < 2:
        raise DatasetError(f"{num_pairs} valid row(s): need at least 2 (a query and a "
                           f"training pair)")
    num_query = min(num_pairs - 1, max(1, round(num_pairs * QUERY_FRACTION)))
    num_train = max(1, round((num_pairs - num_query) * TRAIN_FRACTION_OF_DATABASE))
    pictures = len(np.unique(groups)) if groups is not None else num_pairs
    if pictures == num_pairs or pictures < 2:  # no repeated photo, or no second one to query
        return random_protocol_split(num_pairs, num_query, num_train, seed)
    return _grouped_split(np.asarray(groups), num_query, num_train, seed)


def _grouped_split(groups, num_query, num_train, seed):
    """`default_split` with whole pictures as queries (`splits.whole_groups` over a seeded
    order: at least num_query pairs, at least one picture left for the database); train is
    drawn from the database pairs."""
    rng = np.random.default_rng(seed)
    query = whole_groups(groups, rng.permutation(len(groups)), num_query)
    database = np.setdiff1d(np.arange(len(groups)), query)
    num_train = min(num_train, len(database))
    train = rng.permutation(database)[:num_train]
    return {name: np.sort(part).astype(np.int64) for name, part in
            (("query", query), ("database", database), ("train", train))}


def _splits(path, rows, seed, groups):
    with_split = [row[0] for row in rows if row[4] is not None]
    if not with_split:
        return default_split(len(rows), seed, groups)
    if len(with_split) != len(rows):
        line = next(row[0] for row in rows if row[4] is None)
        raise DatasetError(f"{path}:{line}: no split, while other rows (e.g. line "
                           f"{with_split[0]}) have one: give every row a split, or none")
    splits = _given_splits(path, rows)
    _warn_photos_on_both_sides(path, rows, groups, splits)
    return splits


def _warn_photos_on_both_sides(path, rows, groups, splits):
    """A UserWarning when an image file has query rows and database rows: its query captions
    would find the photo's own database captions (trained on, for train rows) by memory."""
    shared = np.intersect1d(groups[splits["query"]], groups[splits["database"]])
    if not len(shared):
        return
    lines = [row[0] for row, group in zip(rows, groups, strict=True) if group == shared[0]]
    warnings.warn(f"{path}: {len(shared)} image file(s) have both query and database/train "
                  f"rows, e.g. lines {', '.join(map(str, lines))}: queries of a photo that is "
                  f"also in the database measure memory, not retrieval; give all rows of one "
                  f"image the same split", UserWarning, stacklevel=2)


# --------------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------------

def _multi_hot(label_sets):
    """(N, L) float32 multi-hot over the sorted label strings, and the L names."""
    names = sorted({label for labels in label_sets for label in labels})
    column = {name: index for index, name in enumerate(names)}
    multi_hot = np.zeros((len(label_sets), len(names)), np.float32)
    for row, labels in enumerate(label_sets):
        multi_hot[row, [column[label] for label in labels]] = 1.0
    return multi_hot, names


def _image_groups(image_paths):
    """(N,) int64: the same number for the pairs of one image file (a photo with several
    captions), so that a validation split can keep them together."""
    _, groups = np.unique(np.asarray(image_paths, dtype=str), return_inverse=True)
    return groups.astype(np.int64).reshape(-1)


def load_folder(data_dir, seed=0, skip_bad_rows=False, verify_images=False):
    """Loads DIR/pairs.jsonl.

    Args:
        data_dir: the folder DIR.
        seed: seed of the default split (used only when no row has a split).
        skip_bad_rows: skip bad rows with a warning instead of raising.
        verify_images: also decode every image (slow) and treat undecodable ones as bad rows.

    Returns:
        PairedDataset "folder": images (N,) absolute paths ("paths"), texts (N,) str ("raw"),
        labels (N, L) float32 multi-hot, label_names sorted; extras: "line_numbers" (N,) int64
        (the pairs.jsonl line of each pair), "image_groups" (N,) int64 (the same number for
        the pairs of one image file), "bad_rows" (count skipped), "skipped_rows"
        [(line, reason)].

    Raises:
        DatasetError naming the file (and the line, for a bad row).
    """
    root = os.path.abspath(data_dir)
    path = os.path.join(root, PAIRS_FILE)
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: file not found (the folder dataset needs a {PAIRS_FILE}, "
                           f"one JSON object per line)")
    rows, bad = _read_rows(path, root)
    if verify_images and rows:
        bad += _undecodable(rows)
        bad_lines = {line for line, _ in bad}
        rows = [row for row in rows if row[0] not in bad_lines]
    _handle_bad(path, bad, skip_bad_rows)
    if not rows:
        raise DatasetError(f"{path}: no valid rows")
    labels, names = _multi_hot([row[3] for row in rows])
    groups = _image_groups([row[1] for row in rows])
    return PairedDataset(
        name="folder",
        images=np.asarray([row[1] for row in rows], dtype=object),
        image_kind="paths",
        texts=np.asarray([row[2] for row in rows], dtype=object),
        text_kind="raw",
        labels=labels,
        label_names=names,
        splits=_splits(path, rows, seed, groups),
        extras={"line_numbers": np.asarray([row[0] for row in rows], dtype=np.int64),
                "image_groups": groups,
                "bad_rows": len(bad), "skipped_rows": sorted(bad)},
    )
