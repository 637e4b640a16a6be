"""The Wikipedia cross-modal dataset (Rasiwasia et al., ACM MM 2010) from `wiki.mat`.

2,866 pairs from Wikipedia featured articles, 10 classes, one label per pair. The usual
`wiki.mat` (v5, or v7.3 read the same way) holds

    I_tr (2173, 128), I_te (693, 128)   image: 128-d SIFT bag-of-visual-words
    T_tr (2173, 10),  T_te (693, 10)    text: 10-d LDA topic proportions
    L_train / L_test (N, 10) one-hot    labels; or L_tr / L_te (N, 1) class ids 1..10

Both modalities are vectors: image_kind "features", text_kind "bow" (the 10-d LDA vectors stand
in for bags of words). Rows are [training rows; test rows]. Protocol (fixed, no seed): query =
the 693 test rows, database = train = the 2,173 training rows.
"""

import os

import numpy as np

from daah_tf.data.base import DatasetError, PairedDataset
from daah_tf.data.mat_files import (
    as_labels,
    as_matrix,
    find_file,
    infer_num_rows,
    load_mat,
    mat_keys,
    resolve_keys,
)

FILE_NAME = "wiki.mat"
# The 10 categories, in the order of the dataset's class ids 1..10.
LABEL_NAMES = ("art", "biology", "geography", "history", "literature", "media", "music",
               "royalty", "sport", "warfare")
_ONE_HOT_KEYS = {"tr": ("L_train",), "te": ("L_test",)}
_CLASS_ID_KEYS = {"tr": ("L_tr",), "te": ("L_te",)}


def _one_hot_from_ids(ids, key, path, num_classes):
    """(N, C) float32 one-hot from (N,) class ids 1..C."""
    ids = np.asarray(ids)
    if ids.dtype.kind == "f" and not np.all(np.isfinite(ids) & (ids == np.round(ids))):
        raise DatasetError(f"{path}: {key} holds non-integer class ids")
    ids = ids.astype(np.int64)
    bad = np.flatnonzero((ids < 1) | (ids > num_classes))
    if len(bad):
        raise DatasetError(f"{path}: {key} row {bad[0]} (0-based) has class id {ids[bad[0]]}; "
                           f"expected 1..{num_classes}")
    one_hot = np.zeros((len(ids), num_classes), np.float32)
    one_hot[np.arange(len(ids)), ids - 1] = 1.0
    return one_hot


def _label_keys(path):
    """Which label keys the file has: one-hot (preferred) or class ids."""
    found = mat_keys(path)
    try:
        resolve_keys(path, found, list(_ONE_HOT_KEYS.values()))
        return _ONE_HOT_KEYS, True
    except DatasetError:
        return _CLASS_ID_KEYS, False


def _part(arrays, part, label_key, one_hot, path):
    """(images (n, 128), texts (n, 10), labels (n, C)) of the "tr" or "te" part, float32."""
    images, texts, labels = arrays[f"I_{part}"], arrays[f"T_{part}"], arrays[label_key]
    if not one_hot:
        labels = np.reshape(labels, -1)  # class ids: (n, 1) or (1, n) -> (n,)
    num_rows = infer_num_rows({f"{path}:{label_key}": labels, f"{path}:I_{part}": images,
                               f"{path}:T_{part}": texts})
    images = as_matrix(images, num_rows, f"I_{part}", path)
    texts = as_matrix(texts, num_rows, f"T_{part}", path)
    if one_hot:
        labels = as_labels(labels, num_rows, label_key, path)
        if not np.all(labels.sum(axis=1) == 1):
            row = int(np.argmax(labels.sum(axis=1) != 1))
            raise DatasetError(f"{path}: {label_key} row {row} (0-based) is not one-hot")
    else:
        labels = _one_hot_from_ids(labels, label_key, path, len(LABEL_NAMES))
    return images, texts, labels


def _label_names(num_classes):
    if num_classes == len(LABEL_NAMES):
        return list(LABEL_NAMES)
    return [f"class{index + 1}" for index in range(num_classes)]


def load_wiki(data_dir):
    """Loads Wiki from data_dir/wiki.mat.

    Returns:
        PairedDataset "wiki": images (2866, 128) float32 "features", texts (2866, 10) float32
        "bow", labels (2866, 10) one-hot; rows [2,173 training; 693 test]; splits query = the
        test rows, database = train = the training rows.

    Raises:
        DatasetError naming the file: missing file or keys (listing those found and expected),
        shapes that do not line up, NaN/Inf rows, labels that are not one-hot.
    """
    path = find_file(data_dir, FILE_NAME)
    if path is None:
        raise DatasetError(f"{os.path.join(data_dir, FILE_NAME)}: file not found")
    label_keys, one_hot = _label_keys(path)
    arrays = load_mat(path, ["I_tr", "I_te", "T_tr", "T_te", *label_keys.values()])
    train = _part(arrays, "tr", label_keys["tr"][0], one_hot, path)
    test = _part(arrays, "te", label_keys["te"][0], one_hot, path)
    for index, what in enumerate(("I", "T", "L")):
        if train[index].shape[1] != test[index].shape[1]:
            raise DatasetError(f"{path}: {what}_tr and {what}_te have {train[index].shape[1]} "
                               f"and {test[index].shape[1]} columns")
    num_train, num_test = len(train[0]), len(test[0])
    database = np.arange(num_train, dtype=np.int64)
    return PairedDataset(
        name="wiki",
        images=np.concatenate([train[0], test[0]]),
        image_kind="features",
        texts=np.concatenate([train[1], test[1]]),
        text_kind="bow",
        labels=np.concatenate([train[2], test[2]]),
        label_names=_label_names(train[2].shape[1]),
        splits={"query": np.arange(num_train, num_train + num_test, dtype=np.int64),
                "database": database, "train": database.copy()},
    )
