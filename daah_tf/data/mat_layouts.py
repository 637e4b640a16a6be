"""The generic "IAll / YAll / LAll" paired layouts of .mat files, and `load_mat_layout`.

The loader shared by MIRFLICKR-25K, NUS-WIDE and IAPR TC-12, which the deep cross-modal hashing
repositories (DCMH, SSAH, DJSRH, AGAH, ...) distribute in the same few shapes, parameterised by a
`MatLayout` (file names, protocol sizes):

- four files `PREFIX-iall.mat` (`IAll`, images), `PREFIX-fall.mat` (`FAll`, image features),
  `PREFIX-lall.mat` (`LAll`, labels) and `PREFIX-yall.mat` (`YAll`, text bag-of-words);
  `lall`, `yall` and one of `iall` / `fall` are needed;
- one file holding images (`images` or `IAll`) or features (`FAll`), `YAll` and `LAll`;
- one file already split into database and test parts (`VDatabase`, `YDatabase`,
  `databaseL`, `VTest`, `YTest`, `testL`, as in `iapr-tc12-rand.mat`).

Key names match case-insensitively (`lall`, `LALL`, `LAll`), and file names too.
"""

import dataclasses
import os
import warnings

import numpy as np

from daah_tf.data.base import DatasetError, PairedDataset
from daah_tf.data.mat_arrays import (
    as_features,
    as_images,
    as_labels,
    as_matrix,
    infer_num_rows,
)
from daah_tf.data.mat_reading import load_mat, mat_keys, match_key
from daah_tf.data.protocols import scaled_protocol_split, train_from_database

# Accepted key names per role, first = canonical. Matching is case-insensitive.
IMAGE_KEYS = ("IAll", "images", "imgs", "I_all")
FEATURE_KEYS = ("FAll", "XAll", "features", "F_all")
TEXT_KEYS = ("YAll", "TAll", "tags", "texts", "Y_all")
LABEL_KEYS = ("LAll", "labels", "L_all")
SPLIT_KEYS = {  # the pre-split layout of iapr-tc12-rand.mat and its relatives
    "db_images": ("VDatabase", "IDatabase", "XDatabase"),
    "db_texts": ("YDatabase", "TDatabase"),
    "db_labels": ("databaseL", "LDatabase"),
    "test_images": ("VTest", "ITest", "XTest"),
    "test_texts": ("YTest", "TTest"),
    "test_labels": ("testL", "LTest"),
}


@dataclasses.dataclass(frozen=True)
class MatLayout:
    """Where a dataset's .mat files are and what its protocol is.

    Attributes:
        name: the dataset's name, e.g. "mirflickr25k".
        prefixes: four-file layout names: PREFIX-iall.mat, PREFIX-fall.mat, PREFIX-lall.mat,
            PREFIX-yall.mat, tried in order.
        single_files: single-file names (IAll/YAll/LAll style or pre-split), tried in order.
        standard_pairs: N of the standard dataset.
        num_query: standard query-set size.
        num_train: standard training-set size (drawn from the database).
        text_dim: standard bag-of-words size (a warning otherwise).
        num_labels: standard label count (a warning otherwise).
        label_names: the standard label names, used when the file has `num_labels` labels.
        other_layouts: descriptions of layouts the dataset's own reader handles, for the
            "not found" message.
    """

    name: str
    prefixes: tuple
    single_files: tuple
    standard_pairs: int
    num_query: int
    num_train: int
    text_dim: int
    num_labels: int
    label_names: tuple | None = None
    other_layouts: tuple = ()


def find_file(data_dir, name):
    """data_dir/NAME, matching the file name case-insensitively; None when absent."""
    exact = os.path.join(data_dir, name)
    if os.path.isfile(exact):
        return exact
    if not os.path.isdir(data_dir):
        return None
    for entry in sorted(os.listdir(data_dir)):
        if entry.lower() == name.lower() and os.path.isfile(os.path.join(data_dir, entry)):
            return os.path.join(data_dir, entry)
    return None


def _four_files(data_dir, prefix):
    """{"iall", "fall", "lall", "yall"} -> path or None for one prefix."""
    return {part: find_file(data_dir, f"{prefix}-{part}.mat")
            for part in ("iall", "fall", "lall", "yall")}


def _pick_image_file(files, images):
    """The image file of a four-file set, by the `images` choice."""
    order = {"auto": ("iall", "fall"), "pixels": ("iall",), "features": ("fall",)}[images]
    for part in order:
        if files[part]:
            return part, files[part]
    return None, None


def _read_four_files(files, images):
    """(part, image array, image path), (texts, path), (labels, path) of a four-file set."""
    part, image_path = _pick_image_file(files, images)
    keys = IMAGE_KEYS if part == "iall" else FEATURE_KEYS
    image = load_mat(image_path, [keys])[keys[0]]
    texts = load_mat(files["yall"], [TEXT_KEYS])[TEXT_KEYS[0]]
    labels = load_mat(files["lall"], [LABEL_KEYS])[LABEL_KEYS[0]]
    return (part, image, image_path), (texts, files["yall"]), (labels, files["lall"])


def _read_single_file(path, images):
    """Same triple as `_read_four_files`, from one IAll/YAll/LAll-style file."""
    found = mat_keys(path)
    choices = {"auto": (IMAGE_KEYS, FEATURE_KEYS), "pixels": (IMAGE_KEYS,),
               "features": (FEATURE_KEYS,)}[images]
    image_keys = next((keys for keys in choices if match_key(keys, found, path)), choices[0])
    arrays = load_mat(path, [image_keys, TEXT_KEYS, LABEL_KEYS])
    part = "iall" if image_keys is IMAGE_KEYS else "fall"
    return ((part, arrays[image_keys[0]], path), (arrays[TEXT_KEYS[0]], path),
            (arrays[LABEL_KEYS[0]], path))


def _image_input(part, array, num_rows, path):
    key = IMAGE_KEYS[0] if part == "iall" else FEATURE_KEYS[0]
    if part == "fall":
        return "features", as_features(array, num_rows, key, path)
    return as_images(array, num_rows, key, path)


def _assemble(layout, image_triple, text_pair, label_pair, seed, extras):
    """The PairedDataset of an all-in-one (not pre-split) layout, with the scaled protocol."""
    part, image, image_path = image_triple
    (texts, text_path), (labels, label_path) = text_pair, label_pair
    num_rows = infer_num_rows(
        {f"{label_path}:{LABEL_KEYS[0]}": labels, f"{text_path}:{TEXT_KEYS[0]}": texts,
         f"{image_path}:{part}": image}, preferred=layout.standard_pairs)
    labels = as_labels(labels, num_rows, LABEL_KEYS[0], label_path)
    texts = as_matrix(texts, num_rows, TEXT_KEYS[0], text_path)
    image_kind, images = _image_input(part, image, num_rows, image_path)
    try:
        splits = scaled_protocol_split(num_rows, layout.standard_pairs, layout.num_query,
                                       layout.num_train, seed)
    except DatasetError as error:
        raise DatasetError(f"{label_path}: {error}") from None  # name the file that is short
    return _dataset(layout, images, image_kind, texts, labels, splits, extras)


def _label_names(layout, num_labels):
    if layout.label_names is not None and len(layout.label_names) == num_labels:
        return list(layout.label_names)
    return [f"label{index:0{len(str(num_labels - 1))}d}" for index in range(num_labels)]


def _warn_if_not_standard(layout, num_rows, text_dim, num_labels):
    standard = (layout.standard_pairs, layout.text_dim, layout.num_labels)
    if (num_rows, text_dim, num_labels) != standard:
        warnings.warn(
            f"{layout.name}: {num_rows} pairs, {text_dim}-d text, {num_labels} labels; the "
            f"standard dataset has {standard[0]}, {standard[1]}-d, {standard[2]}: protocol "
            f"sizes are scaled to the row count", stacklevel=2)


def _dataset(layout, images, image_kind, texts, labels, splits, extras):
    _warn_if_not_standard(layout, len(labels), texts.shape[1], labels.shape[1])
    return PairedDataset(name=layout.name, images=images, image_kind=image_kind, texts=texts,
                         text_kind="bow", labels=labels,
                         label_names=_label_names(layout, labels.shape[1]), splits=splits,
                         extras=extras)


def _has_split_keys(found, path):
    return all(match_key(keys, found, path) for keys in SPLIT_KEYS.values())


def _load_presplit(layout, path, seed):
    """A file already split into database and test parts; rows = [database; test].

    query = the test rows, database = the database rows, train = drawn from the database with
    `seed` (the standard size, scaled when the database is not the standard size).
    """
    arrays = load_mat(path, list(SPLIT_KEYS.values()))
    parts = {prefix: _presplit_part(arrays, prefix, path) for prefix in ("db", "test")}
    return _stack_presplit(layout, parts, path, seed)


def _presplit_part(arrays, prefix, path):
    """((image kind, images), texts, labels) of the "db" or "test" part of a pre-split file."""
    names = [SPLIT_KEYS[f"{prefix}_{kind}"][0] for kind in ("images", "texts", "labels")]
    image, texts, labels = (arrays[name] for name in names)
    num_rows = infer_num_rows({f"{path}:{names[2]}": labels, f"{path}:{names[1]}": texts,
                               f"{path}:{names[0]}": image})
    return (as_images(image, num_rows, names[0], path),
            as_matrix(texts, num_rows, names[1], path),
            as_labels(labels, num_rows, names[2], path))


def _presplit_train_size(layout, num_db):
    """The standard training-set size, scaled when the database is not the standard size."""
    standard_db = layout.standard_pairs - layout.num_query
    if num_db == standard_db:
        return layout.num_train
    return min(num_db, max(1, round(num_db * layout.num_train / standard_db)))


def _stack_presplit(layout, parts, path, seed):
    (db_kind, db_images), db_texts, db_labels = parts["db"]
    (test_kind, test_images), test_texts, test_labels = parts["test"]
    if db_kind != test_kind or db_images.shape[1:] != test_images.shape[1:]:
        raise DatasetError(f"{path}: database images {db_images.shape} and test images "
                           f"{test_images.shape} differ in kind or shape")
    for what, db, test in (("texts", db_texts, test_texts), ("labels", db_labels, test_labels)):
        if db.shape[1] != test.shape[1]:
            raise DatasetError(f"{path}: database and test {what} have {db.shape[1]} and "
                               f"{test.shape[1]} columns")
    num_db, num_test = len(db_labels), len(test_labels)
    database = np.arange(num_db, dtype=np.int64)
    splits = {"query": np.arange(num_db, num_db + num_test, dtype=np.int64),
              "database": database,
              "train": train_from_database(database, _presplit_train_size(layout, num_db),
                                           seed)}
    return _dataset(layout, np.concatenate([db_images, test_images]), db_kind,
                    np.concatenate([db_texts, test_texts]),
                    np.concatenate([db_labels, test_labels]), splits,
                    {"layout": "presplit"})


def _existing(data_dir, layout, kind):
    """(kind, detail) of the first layout present in data_dir, or (None, incomplete sets)."""
    incomplete = []
    for name in layout.single_files if kind in (None, "single") else ():
        path = find_file(data_dir, name)
        if path:
            return "single", path
    for prefix in layout.prefixes if kind in (None, "four") else ():
        files = _four_files(data_dir, prefix)
        if files["lall"] and files["yall"] and (files["iall"] or files["fall"]):
            return "four", files
        if any(files.values()):
            incomplete.append((prefix, files))
    return None, incomplete


def _not_found(data_dir, layout, incomplete):
    if incomplete:
        prefix, files = incomplete[0]
        missing = [f"{prefix}-{part}.mat" for part in ("lall", "yall") if not files[part]]
        if not (files["iall"] or files["fall"]):
            missing.append(f"{prefix}-iall.mat or {prefix}-fall.mat")
        return DatasetError(f"{data_dir}: incomplete {layout.name} four-file set, missing "
                            f"{missing}")
    present = sorted(os.listdir(data_dir))
    shown = present[:20] + (["..."] if len(present) > 20 else [])
    wanted = (list(layout.single_files)
              + [f"{p}-{{iall|fall,lall,yall}}.mat" for p in layout.prefixes]
              + list(layout.other_layouts))
    return DatasetError(f"{data_dir}: no {layout.name} data found; expected one of {wanted}; "
                        f"files found: {shown or 'none'}")


def load_mat_layout(data_dir, layout, seed, images="auto", kind=None):
    """Loads a dataset stored in one of the IAll/YAll/LAll-style .mat layouts.

    Args:
        data_dir: the folder holding the .mat files.
        layout: a `MatLayout`.
        seed: the protocol split's seed.
        images: "auto" (pixels when present, else features), "pixels" or "features".
        kind: None (detect: a single file first, then the four-file sets), "single" or "four".

    Returns:
        A PairedDataset: image_kind "pixels" (N, H, W, 3) uint8 or "features" (N, d) /
        (N, h, w, c) float32; text_kind "bow" (N, V) float32; labels (N, L) float32;
        extras["layout"] in "single", "four", "presplit".

    Raises:
        DatasetError naming the folder or file on missing files or keys, shapes that do not line
        up, NaN/Inf values or non-binary labels.
    """
    if images not in ("auto", "pixels", "features"):
        raise ValueError(f"images must be 'auto', 'pixels' or 'features', got {images!r}")
    if kind not in (None, "single", "four"):
        raise ValueError(f"kind must be None, 'single' or 'four', got {kind!r}")
    if not os.path.isdir(data_dir):
        raise DatasetError(f"{data_dir}: data folder not found")
    kind, detail = _existing(data_dir, layout, kind)
    if kind is None:
        raise _not_found(data_dir, layout, detail)
    if kind == "four":
        if _pick_image_file(detail, images)[0] is None:
            raise DatasetError(f"{data_dir}: no {images} file (iall = pixels, fall = features) "
                               f"among {[p for p in detail.values() if p]}")
        return _assemble(layout, *_read_four_files(detail, images), seed, {"layout": "four"})
    found = mat_keys(detail)
    if _has_split_keys(found, detail) and not match_key(LABEL_KEYS, found, detail):
        return _load_presplit(layout, detail, seed)
    return _assemble(layout, *_read_single_file(detail, images), seed, {"layout": "single"})
