"""A feature cache: the image backbone's feature maps of every pair, computed once, on disk.

Training end to end decodes every image and runs (and back-propagates through) the CNN at every
step. With a frozen backbone the feature map of an image never changes, so it can be computed
once (`tools/cache_features.py`) and training reads it back (`--feature_cache=DIR
--image_backbone=precomputed`): the image side then starts at the attention module.

A cache is a folder; every array is a plain .npy (never pickled), read back memory-mapped so that
a cache larger than RAM streams a batch at a time through the input pipeline:

    manifest.json      what is in the cache and how it was made (see `write_feature_cache`)
    features.npy       (N, h, w, c) float16 feature maps (or (N, d) vectors), all N pairs in the
                       reader's row order
    texts.npy          (N, V) float32 bag of words, for datasets with "bow" text, or
    texts.json         N raw strings, for datasets with "raw" text (featurized at training time
                       by the featurizer fitted on the training split, as without a cache)
    labels.npy         (N, L) float32 multi-hot
    label_names.json   L label names
    vocabulary.json    the V bag-of-words tokens, when the reader knows them
    splits.npz         "query", "database", "train": int64 row indices (the reader's splits);
                       "image_groups" (N,) int64, when the reader gives it (which pairs share
                       a photo, so that validation keeps them together)

Augmentation (random crop and flip) cannot be applied to cached features: the cache holds the
features of the whole, unaugmented image.

Slightly over 400 lines because it holds one on-disk format end to end: the layout above, its
writer and its checked reader share the file names, the manifest keys and the NaN/Inf check, and
keeping them in one module keeps writer and reader from drifting apart (should it grow, the
seam is its "Writing" / "Reading" halves).
"""

import datetime
import json
import os
import shutil
import tempfile

import numpy as np

from daah_tf.data.base import SPLITS, DatasetError, PairedDataset

FORMAT = "daah_tf.feature_cache"
FORMAT_VERSION = 1
FEATURE_DTYPE = "float16"
MANIFEST_FILE = "manifest.json"
FEATURES_FILE = "features.npy"
TEXTS_BOW_FILE = "texts.npy"
TEXTS_RAW_FILE = "texts.json"
LABELS_FILE = "labels.npy"
LABEL_NAMES_FILE = "label_names.json"
VOCABULARY_FILE = "vocabulary.json"
SPLITS_FILE = "splits.npz"

# Bytes read at a time when scanning a cached array for NaN/Inf: bounded memory for any size.
_SCAN_BYTES = 64 << 20
# Rows of a bag-of-words array copied at a time into the cache.
_COPY_ROWS = 4096
_REQUIRED_KEYS = ("format", "format_version", "dataset", "backbone", "image_size",
                  "feature_shape", "feature_dtype", "rows", "text_kind", "num_labels", "files")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def _image_batches(data, batch_size, image_size):
    """Every row's image, in row order, unaugmented: (B, S, S, 3) float32 batches.

    Reuses the evaluation pipeline, so images are decoded and resized exactly as they are when
    training end to end. The pipeline insists on a text side; a zero-size broadcast view stands
    in for it (no memory), since only the images are needed here.
    """
    import dataclasses

    from daah_tf.data.pipeline import make_pipeline

    placeholder = np.broadcast_to(np.zeros((1, 1), np.float32), (len(data), 1))
    images_only = dataclasses.replace(data, texts=placeholder, text_kind="bow")
    pipeline = make_pipeline(images_only, np.arange(len(data), dtype=np.int64), batch_size,
                             training=False, image_size=image_size, with_labels=False)
    return (inputs["image"] for inputs in pipeline)


def _check_finite_chunk(values, path, first_row, what):
    if not np.isfinite(values).all():
        bad = first_row + int(np.argwhere(~np.isfinite(values))[0][0])
        raise DatasetError(f"{path}: row {bad}: {what} is NaN or infinite")


def _unreadable_batch(data, start, batch_size, error):
    rows = f"rows {start}..{min(start + batch_size, len(data)) - 1}"
    if data.image_kind == "paths":
        rows += f" (files {', '.join(str(p) for p in data.images[start:start + batch_size])})"
    return (f"{data.name}: {rows}: an image could not be read ({error.message.strip()}); "
            f"find bad files with python -m daah_tf.data.check --verify_images")


def _write_features(data, path, encoder, image_size, batch_size, progress):
    """Runs the encoder over every row and writes (N, h, w, c) float16, batch by batch."""
    import tensorflow as tf

    feature_shape = tuple(int(d) for d in
                          encoder.compute_output_shape((None, image_size, image_size, 3))[1:])
    # open_memmap: the array lives in the file; only the pages of the current batch are dirty.
    features = np.lib.format.open_memmap(path, mode="w+", dtype=FEATURE_DTYPE,
                                         shape=(len(data), *feature_shape))
    encode = tf.function(lambda images: tf.cast(encoder(images, training=False), tf.float32),
                         reduce_retracing=True)
    start = 0
    batches = _image_batches(data, batch_size, image_size)
    while True:
        try:
            images = next(batches, None)
        except tf.errors.OpError as error:  # e.g. an image file that does not decode
            raise DatasetError(_unreadable_batch(data, start, batch_size, error)) from error
        if images is None:
            break
        with np.errstate(over="ignore"):  # an overflow becomes inf, caught just below
            values = encode(images).numpy().astype(FEATURE_DTYPE)
        # float16 tops out at 65504: a larger activation would be stored as inf.
        _check_finite_chunk(values.reshape(len(values), -1), path, start,
                            "the backbone's feature map (in float16)")
        features[start:start + len(values)] = values
        start += len(values)
        if progress:
            progress(start, len(data))
    if start != len(data):
        raise RuntimeError(f"the image pipeline yielded {start} of {len(data)} rows")
    features.flush()
    del features  # closes the mapping before the folder is renamed
    return feature_shape


def _write_bow(texts, path):
    """(N, V) bag of words -> float32 .npy, a block of rows at a time."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=texts.shape)
    for start in range(0, len(texts), _COPY_ROWS):
        block = np.asarray(texts[start:start + _COPY_ROWS], dtype=np.float32)
        _check_finite_chunk(block.reshape(len(block), -1), path, start, "the bag of words")
        out[start:start + len(block)] = block
    out.flush()
    del out


def _write_json(path, value):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle, ensure_ascii=False)


def write_feature_cache(data: PairedDataset, out_dir, encoder, image_size, *, batch_size=32,
                        seed=0, data_dir="", overwrite=False, progress=None):
    """Caches the backbone's features of every pair of `data` into `out_dir`.

    Written into a temporary sibling folder and renamed at the end, so `out_dir` either holds a
    complete cache or nothing (an interrupted run leaves a `.NAME.partial-*` folder beside it).

    Args:
        data: a dataset with "pixels" or "paths" images.
        out_dir: the cache folder to create.
        encoder: a built `ImageEncoder` (daah_tf.models.backbones.build_backbone: data code
            builds no model); run with training=False.
        image_size: S: images are decoded and resized to S x S, as in training end to end.
        batch_size: images per forward pass.
        seed: recorded in the manifest (the seed of randomly initialised weights and of the
            reader's random split).
        data_dir: recorded in the manifest.
        overwrite: replace an existing `out_dir` (only once the new cache is complete).
        progress: optional callable(rows done, rows total), called after each batch.

    Returns:
        The manifest (also written as manifest.json).

    Raises:
        FileExistsError: `out_dir` exists and `overwrite` is false.
        ValueError: images that are already features.
        DatasetError: a NaN/Inf feature (or one beyond float16's range), or bad text values.
    """
    if data.image_kind not in ("pixels", "paths"):
        raise ValueError(f"{data.name}: images are already {data.image_kind}; nothing to cache")
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not overwrite:
        raise FileExistsError(f"{out_dir} exists; choose another folder or pass --overwrite")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.partial-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would hide a shared cache from others
    try:
        feature_shape = _write_features(data, os.path.join(staging, FEATURES_FILE), encoder,
                                        image_size, batch_size, progress)
        files = {"features": FEATURES_FILE, "labels": LABELS_FILE,
                 "label_names": LABEL_NAMES_FILE, "splits": SPLITS_FILE, "vocabulary": None}
        if data.text_kind == "bow":
            files["texts"] = TEXTS_BOW_FILE
            _write_bow(data.texts, os.path.join(staging, TEXTS_BOW_FILE))
        else:
            files["texts"] = TEXTS_RAW_FILE
            _write_json(os.path.join(staging, TEXTS_RAW_FILE), [str(t) for t in data.texts])
        labels = np.asarray(data.labels, dtype=np.float32)
        _check_finite_chunk(labels, os.path.join(staging, LABELS_FILE), 0, "the labels")
        np.save(os.path.join(staging, LABELS_FILE), labels, allow_pickle=False)
        _write_json(os.path.join(staging, LABEL_NAMES_FILE), [str(n) for n in data.label_names])
        if data.vocabulary is not None:
            files["vocabulary"] = VOCABULARY_FILE
            _write_json(os.path.join(staging, VOCABULARY_FILE),
                        [str(token) for token in data.vocabulary])
        splits = {name: np.asarray(data.splits[name], dtype=np.int64) for name in SPLITS}
        groups = {}
        if data.extras.get("image_groups") is not None:
            groups["image_groups"] = np.asarray(data.extras["image_groups"], dtype=np.int64)
        np.savez(os.path.join(staging, SPLITS_FILE), **splits, **groups)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "dataset": data.name,
            "data_dir": os.path.abspath(data_dir) if data_dir else "",
            "backbone": encoder.backbone,
            "weights": str(encoder.weights_source),
            "cnn_filters": list(encoder.cnn_filters) if encoder.backbone == "small_cnn" else None,
            "cnn_pool_last_block": (encoder.cnn_pool_last_block
                                    if encoder.backbone == "small_cnn" else None),
            "seed": int(seed),
            "image_size": int(image_size),
            "feature_shape": list(feature_shape),
            "feature_dtype": FEATURE_DTYPE,
            "rows": len(data),
            "text_kind": data.text_kind,
            "text_dim": int(data.texts.shape[1]) if data.text_kind == "bow" else None,
            "num_labels": int(labels.shape[1]),
            "splits": {name: len(index) for name, index in splits.items()},
            "files": files,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        # The manifest last: a folder with a manifest is a complete cache.
        _write_json(os.path.join(staging, MANIFEST_FILE), manifest)
        _replace_folder(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _replace_folder(staging, out_dir):
    """Renames `staging` to `out_dir`; an existing `out_dir` is removed only afterwards."""
    if not os.path.exists(out_dir):
        os.rename(staging, out_dir)
        return
    previous = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.previous-",
                                dir=os.path.dirname(out_dir))
    os.rmdir(previous)  # only the unique name was wanted
    os.rename(out_dir, previous)
    os.rename(staging, out_dir)
    shutil.rmtree(previous, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

def read_manifest(directory):
    """manifest.json of a cache, checked for format and version.

    Raises:
        DatasetError naming the file when it is missing, not JSON, or not a known format.
    """
    path = os.path.join(directory, MANIFEST_FILE)
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: not found; is {directory} a feature cache written by "
                           f"tools/cache_features.py (an interrupted one has no manifest)?")
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: cannot read the manifest ({error})") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DatasetError(f"{path}: not a daah_tf feature cache manifest")
    missing = [key for key in _REQUIRED_KEYS if key not in manifest]
    if missing:
        raise DatasetError(f"{path}: manifest lacks {missing}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise DatasetError(f"{path}: format version {manifest['format_version']!r}; this "
                           f"daah_tf reads version {FORMAT_VERSION}: cache the features again")
    return manifest


def _load_npy(path, mmap):
    """np.load without pickle, errors as DatasetError naming the file."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: not found (the feature cache is incomplete)")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as error:  # ValueError: bad header, or an object array
        raise DatasetError(f"{path}: cannot read ({error})") from error


def _check_array(path, array, shape, dtype, manifest_path):
    if array.dtype != np.dtype(dtype) or tuple(array.shape) != tuple(shape):
        raise DatasetError(f"{path}: holds {array.dtype} {tuple(array.shape)}, but "
                           f"{manifest_path} says {np.dtype(dtype)} {tuple(shape)}")


def scan_finite(path, array):
    """Raises a DatasetError naming `path` and the row when the memory-mapped `array` holds a
    NaN or Inf.

    Reads the file in blocks with ordinary reads rather than through the mapping, so scanning a
    cache larger than RAM neither needs the memory nor leaves it counted as resident.
    """
    row_size = int(np.prod(array.shape[1:], dtype=np.int64))
    if array.size == 0 or row_size == 0:
        return
    rows_per_block = max(1, _SCAN_BYTES // (row_size * array.dtype.itemsize))
    with open(path, "rb") as handle:
        handle.seek(array.offset)
        for first in range(0, len(array), rows_per_block):
            count = min(rows_per_block, len(array) - first) * row_size
            block = np.fromfile(handle, dtype=array.dtype, count=count)
            if block.size != count:
                raise DatasetError(f"{path}: truncated at row {first}")
            # Element order (C or Fortran) does not matter for "any NaN"; the row reported
            # assumes C order, which is what this module writes.
            _check_finite_chunk(block.reshape(-1, row_size), path, first, "a value")


def _load_splits(path, rows):
    """(splits, image_groups or None) stored in splits.npz."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            splits = {name: np.asarray(stored[name]) for name in SPLITS}
            groups = np.asarray(stored["image_groups"]) if "image_groups" in stored else None
    except FileNotFoundError as error:
        raise DatasetError(f"{path}: not found (the feature cache is incomplete)") from error
    except (OSError, ValueError, KeyError) as error:
        raise DatasetError(f"{path}: cannot read the splits ({error})") from error
    for name, index in splits.items():
        if index.ndim != 1 or index.dtype.kind not in "iu":
            raise DatasetError(f"{path}: split {name!r} is not a vector of row indices")
        if len(index) and (index.min() < 0 or index.max() >= rows):
            raise DatasetError(f"{path}: split {name!r} has rows outside 0..{rows - 1}")
    if groups is not None and (groups.shape != (rows,) or groups.dtype.kind not in "iu"):
        raise DatasetError(f"{path}: image_groups is not a vector of {rows} integers")
    return {name: index.astype(np.int64) for name, index in splits.items()}, groups


def _load_json_list(path, length=None):
    try:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
    except FileNotFoundError as error:
        raise DatasetError(f"{path}: not found (the feature cache is incomplete)") from error
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: cannot read ({error})") from error
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise DatasetError(f"{path}: expected a JSON list of strings")
    if length is not None and len(values) != length:
        raise DatasetError(f"{path}: {len(values)} entries, the manifest says {length}")
    return values


def load_feature_cache(directory, *, dataset=None, verify=True):
    """Reads a feature cache as a PairedDataset with image_kind "features".

    Arrays are memory-mapped (read-only, never unpickled): the input pipeline reads a batch of
    rows at a time, so the cache need not fit in memory.

    Args:
        directory: the cache folder (tools/cache_features.py --out).
        dataset: when given, the dataset name the cache must hold (the run's --dataset).
        verify: scan features, bag of words and labels for NaN/Inf (reads every byte once).

    Returns:
        PairedDataset named after the cached dataset: images (N, h, w, c) float16 memmap,
        texts (N, V) float32 memmap ("bow") or (N,) str ("raw"), labels (N, L) float32, the
        cached splits; extras["feature_cache"] is the manifest, and extras["image_groups"]
        the reader's, when the cache has them.

    Raises:
        DatasetError naming the file: a missing or unreadable file, a file that disagrees with
        the manifest, NaN/Inf values, or a cache of another dataset.
    """
    directory = os.path.abspath(directory)
    if not os.path.isdir(directory):
        raise DatasetError(f"feature cache {directory} (--feature_cache) is not a folder")
    manifest = read_manifest(directory)
    manifest_path = os.path.join(directory, MANIFEST_FILE)
    if dataset is not None and manifest["dataset"] != dataset:
        raise DatasetError(f"{manifest_path}: the cache holds dataset {manifest['dataset']!r}, "
                           f"but the run is for {dataset!r} (pass --dataset="
                           f"{manifest['dataset']})")
    rows, files = int(manifest["rows"]), manifest["files"]

    def path_of(key):
        return os.path.join(directory, files[key])

    features = _load_npy(path_of("features"), mmap=True)
    _check_array(path_of("features"), features, (rows, *manifest["feature_shape"]),
                 manifest["feature_dtype"], manifest_path)
    if manifest["text_kind"] == "bow":
        texts = _load_npy(path_of("texts"), mmap=True)
        _check_array(path_of("texts"), texts, (rows, manifest["text_dim"]), np.float32,
                     manifest_path)
    elif manifest["text_kind"] == "raw":
        texts = np.asarray(_load_json_list(path_of("texts"), rows), dtype=object)
    else:
        raise DatasetError(f"{manifest_path}: unknown text_kind {manifest['text_kind']!r}")
    labels = _load_npy(path_of("labels"), mmap=False)
    _check_array(path_of("labels"), labels, (rows, manifest["num_labels"]), np.float32,
                 manifest_path)
    _check_finite_chunk(labels, path_of("labels"), 0, "a label")
    if verify:
        scan_finite(path_of("features"), features)
        if manifest["text_kind"] == "bow":
            scan_finite(path_of("texts"), texts)
    label_names = _load_json_list(path_of("label_names"), manifest["num_labels"])
    splits, groups = _load_splits(path_of("splits"), rows)
    extras = {"feature_cache": manifest}
    if groups is not None:
        extras["image_groups"] = groups.astype(np.int64)
    vocabulary = None
    if files.get("vocabulary"):
        vocabulary = _load_json_list(path_of("vocabulary"))
    return PairedDataset(
        name=manifest["dataset"],
        images=features,
        image_kind="features",
        texts=texts,
        text_kind=manifest["text_kind"],
        labels=labels,
        label_names=label_names,
        splits=splits,
        vocabulary=vocabulary,
        extras=extras,
    )
