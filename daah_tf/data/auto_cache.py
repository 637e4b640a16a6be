"""The automatic feature cache of a run with a frozen pretrained backbone on pictures.

A frozen backbone's feature map of an image never changes, so the first run computes every
row's map once (`feature_cache.write_feature_cache`: float16, memory-mapped, written into a
temporary folder and renamed, so a cache is complete or absent) and every later run, and
`evaluate` / `search`, read it back. The cache is found again by a key over everything its
contents depend on:

    the rows        each image path with the sha256 of the file's bytes (a changed or replaced
                    file gives a new key; a file whose modification time alone changed does
                    not), pixel arrays by their bytes, the texts, the labels and label names
    the backbone    its name, its weights (for "imagenet": the converted weights file, whose
                    name carries the checkpoint's hash; for a FILE: its path, size and mtime)
    the images      the side S they are resized to, the cache format version

Reading every image file on every run would cost seconds to minutes, so a run first looks for
an alias: CACHE_ROOT/.aliases/<stat key>.json, the stat key being the same key with each image
file's (path, size, modification time) in place of its bytes, names the folder that a run with
exactly these file stats found or computed. A valid alias (its folder holds a manifest) is
trusted without reading any image file; otherwise the files are hashed, the content-keyed
folder is reused or computed, and the alias is written (atomically). An alias is only a
shortcut: a stale or unreadable one is ignored, and deleting .aliases/ costs one hashing pass.

The splits are not part of the key: a row's features do not depend on which split holds it, so
runs that differ only in --seed (whose random protocol split differs on a folder without
"split" fields) share one cache, and `load_cached` hands back the reader's splits of this run.

Caches live in CACHE_ROOT/<dataset>-<backbone>-<S>px-<key[:16]>/, CACHE_ROOT being --cache_dir,
else DATA_DIR/.daah_cache when that can be written, else the user cache folder
(~/.cache/daah_tf/features, or $DAAH_TF_CACHE_DIR/features).

Data code builds no model: the caller (daah_tf/training/data_loading.py) describes the backbone
as a `FrozenBackbone`, the identity of its weights and a function that builds it (called only
when the cache is computed).
"""

import hashlib
import json
import os
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from daah_tf.atomic import atomic_write_json
from daah_tf.data import feature_cache
from daah_tf.data.base import DatasetError, PairedDataset
from daah_tf.user_cache import cache_dir as user_cache_dir

CACHE_FOLDER = ".daah_cache"
# Beside the caches in CACHE_ROOT: <stat key>.json -> the folder those file stats lead to.
ALIAS_FOLDER = ".aliases"
# Part of the key: bump when what a cache holds changes for the same inputs. 2: the splits
# left the key (version-1 caches were one per random split, i.e. one per seed). 3: image files
# are keyed by their bytes instead of their size and modification time (caches of version 2
# are computed once more, then found by content).
KEY_VERSION = 3
# Bytes read at a time when hashing an image file: bounded memory for any file size.
_HASH_CHUNK_BYTES = 1 << 20


def is_cached_run(data: PairedDataset, model_config, feature_cache_dir=""):
    """True when the run trains its heads on the automatic cache: a frozen backbone, picture
    inputs, and no explicit --feature_cache."""
    return (model_config.freeze_backbone and not feature_cache_dir
            and data.image_kind in ("pixels", "paths"))


class FrozenBackbone(NamedTuple):
    """The frozen backbone whose features are cached, as its caller describes it.

    identity: what its weights are, part of the cache key (models.backbones.weights_identity).
    build: () -> the built encoder, (B, S, S, 3) float in [0, 255] -> (B, h, w, c); called only
        when the cache is computed.
    """

    identity: str
    build: Callable


def _file_sha256(path):
    """The hex sha256 of the bytes of the file at `path`, read a chunk at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file_stat(path):
    """What the stat key knows of a file: its size and modification time (no bytes read)."""
    status = os.stat(path)
    return f"{status.st_size}\0{status.st_mtime_ns}"


def _image_files_digest(paths, describe):
    """sha256 over every row's (path, describe(path)); a file that several rows share is
    described once."""
    digest = hashlib.sha256()
    described = {}
    for path in paths:
        if path not in described:
            described[path] = describe(path)
        digest.update(f"{path}\0{described[path]}\n".encode())
    return digest.hexdigest()


def _rows_digest(data: PairedDataset, by_contents=True):
    """sha256 over every row: image files by path and the sha256 of their bytes (by_contents)
    or by path, size and mtime (the stat key), pixel arrays by their bytes, texts, labels and
    label names (not the splits: see the module docstring)."""
    digest = hashlib.sha256()
    if data.image_kind == "paths":
        describe = _file_sha256 if by_contents else _file_stat
        digest.update(_image_files_digest(data.images, describe).encode())
    else:
        digest.update(np.ascontiguousarray(data.images).tobytes())
    if data.text_kind == "raw":
        for text in data.texts:
            digest.update(str(text).encode("utf-8") + b"\0")
    else:
        digest.update(np.ascontiguousarray(data.texts, dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(data.labels, dtype=np.float32).tobytes())
    digest.update(json.dumps([str(n) for n in data.label_names]).encode("utf-8"))
    return digest.hexdigest()


def cache_key(data: PairedDataset, model_config, image_size, weights_identity, by_contents=True):
    """The hex sha256 naming the cache of these rows through this backbone at this size
    (weights_identity: FrozenBackbone.identity). by_contents=False gives the stat key, which
    names an alias and reads no image file."""
    parts = {
        "version": KEY_VERSION,
        "format_version": feature_cache.FORMAT_VERSION,
        "dataset": data.name,
        "rows": _rows_digest(data, by_contents),
        "backbone": model_config.image_backbone,
        "weights": weights_identity,
        "image_size": int(image_size),
    }
    if model_config.image_backbone == "small_cnn":
        # Its architecture is a setting, not part of the weights' identity (pretrained
        # backbones have theirs fixed); other backbones' keys stay as they were.
        parts["small_cnn"] = {"filters": list(model_config.cnn_filters),
                              "pool_last_block": bool(model_config.cnn_pool_last_block)}
    if not by_contents:
        parts["images_by"] = "stat"  # a stat key never equals a content key
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _writable(folder):
    probe_dir = folder if os.path.isdir(folder) else os.path.dirname(folder)
    return os.path.isdir(probe_dir) and os.access(probe_dir, os.W_OK | os.X_OK)


def cache_root(cache_dir, data_dir):
    """Where caches go: `cache_dir`, else DATA_DIR/.daah_cache if writable, else the user
    cache folder."""
    if cache_dir:
        return cache_dir
    if data_dir:
        beside = os.path.join(os.path.abspath(data_dir), CACHE_FOLDER)
        if _writable(beside):
            return beside
    return os.path.join(user_cache_dir(), "features")


def _is_complete(folder):
    """A folder with a manifest is a complete cache (the manifest is written last)."""
    return os.path.isfile(os.path.join(folder, feature_cache.MANIFEST_FILE))


def _alias_path(root, stat_key):
    return os.path.join(root, ALIAS_FOLDER, f"{stat_key}.json")


def _read_alias(root, stat_key):
    """The complete cache folder the alias of `stat_key` names, or None: a missing, unreadable
    or stale alias (its folder gone or incomplete) only means the files are hashed again."""
    try:
        with open(_alias_path(root, stat_key), encoding="utf-8") as stream:
            name = json.load(stream)["folder"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    # Only a folder name directly in the root: an alias never leads elsewhere.
    if not isinstance(name, str) or name in ("", ".", "..") or os.path.basename(name) != name:
        return None
    folder = os.path.join(root, name)
    return folder if _is_complete(folder) else None


def _write_alias(root, stat_key, folder, print_fn):
    """Records that these file stats lead to `folder`. Best effort: the alias only saves
    hashing the files next time, so a root the run cannot write (a shared read-only cache)
    must not stop it."""
    try:
        atomic_write_json(_alias_path(root, stat_key), {"folder": os.path.basename(folder)})
    except OSError as error:
        print_fn(f"  (could not record the alias of {folder}: {error}; the next run hashes "
                 f"the image files again)")


class _Location(NamedTuple):
    """Where a run's cache is: its folder, and the stat key whose alias should name it (None
    when the folder was found through that alias, or the images are not files)."""

    folder: str
    alias_to_write: str | None


def _locate(data: PairedDataset, model_config, image_size, weights_identity, root, print_fn):
    """The cache folder of this run in `root`: through the stat alias when it is valid (no
    image file read), else by the content key (every image file hashed)."""
    stat_key = None
    if data.image_kind == "paths":
        # The stats are taken before the bytes are read: a file rewritten in between gets a
        # new modification time, so the alias written for the old stats is never used for it.
        stat_key = cache_key(data, model_config, image_size, weights_identity, by_contents=False)
        aliased = _read_alias(root, stat_key)
        if aliased is not None:
            return _Location(aliased, None)
        print_fn(f"Checking the contents of {len(set(data.images))} image files (new or "
                 f"changed modification times) ...")
    key = cache_key(data, model_config, image_size, weights_identity)
    name = f"{data.name}-{model_config.image_backbone}-{int(image_size)}px-{key[:16]}"
    return _Location(os.path.join(root, name), stat_key)


def cache_path(data: PairedDataset, model_config, image_size, weights_identity, cache_dir="",
               data_dir="", print_fn=print):
    """The folder of this run's cache (it may not exist yet); found through the alias of the
    image files' stats when that names a complete cache, else by hashing their contents (after
    a "Checking the contents ..." line to print_fn). Writes no alias (ensure_feature_cache
    does, once the folder is complete)."""
    root = cache_root(cache_dir, data_dir)
    return _locate(data, model_config, image_size, weights_identity, root, print_fn).folder


def _progress_bar(total, print_fn):
    """A callable(done, total) drawing a Keras progress bar with rate and ETA."""
    import keras

    bar = keras.utils.Progbar(total, unit_name="image")

    def report(done, _total):
        bar.update(done)

    print_fn(f"  (images are read, resized and run through the backbone once; {total} rows)")
    return report


def ensure_feature_cache(data: PairedDataset, model_config, image_size, backbone, *,
                         cache_dir="", data_dir="", batch_size=32, print_fn=print, progress=True):
    """The folder of the complete feature cache of `data`, computing it when missing.

    Args:
        data: the reader's dataset (pictures), before the validation split is carved.
        model_config: the run's ModelConfig (the backbone and its weights).
        image_size: S.
        backbone: the `FrozenBackbone` of model_config at S.
        cache_dir, data_dir: see `cache_root`.
        batch_size: images per forward pass while caching.
        print_fn: where "Checking the contents ...", "Caching ..." / "Reusing ..." lines go.
        progress: draw a progress bar while caching.

    Returns:
        (folder, built): built is True when this call computed the cache.
    """
    root = cache_root(cache_dir, data_dir)
    folder, alias_to_write = _locate(data, model_config, image_size, backbone.identity, root,
                                     print_fn)
    if _is_complete(folder):
        print_fn(f"Reusing the feature cache {folder}")
        if alias_to_write:
            _write_alias(root, alias_to_write, folder, print_fn)
        return folder, False
    if model_config.image_weights in (None, "none"):
        raise ValueError("a frozen backbone with random weights (--image_weights=none) gives "
                         "features nobody can reproduce at serving time: pass "
                         "--image_weights=imagenet|FILE or --freeze_backbone=false")
    encoder = backbone.build()
    print_fn(f"Caching the {model_config.image_backbone} features of {len(data)} images of "
             f"{data.name} at {image_size}x{image_size} into {folder} (once; later runs, "
             f"evaluate and search reuse it)")
    report = _progress_bar(len(data), print_fn) if progress else None
    try:
        feature_cache.write_feature_cache(
            data, folder, encoder, image_size, batch_size=batch_size, data_dir=data_dir,
            progress=report)
    except OSError:
        # Another run finished the same cache first: its rename won; use its folder.
        if not _is_complete(folder):
            raise
    if alias_to_write:
        _write_alias(root, alias_to_write, folder, print_fn)
    return folder, True


def load_cached(data: PairedDataset, model_config, image_size, backbone, **kwargs):
    """`data` with its images replaced by the cached feature maps (computed when missing;
    `backbone`, a FrozenBackbone, and kwargs: see ensure_feature_cache).

    Returns:
        A PairedDataset with image_kind "features" (memory-mapped float16 maps), the same
        rows, texts and labels, and `data`'s splits (not the ones stored with the cache, which
        are those of the run that built it); extras["feature_cache_dir"] is the folder.
    """
    folder, _ = ensure_feature_cache(data, model_config, image_size, backbone, **kwargs)
    cached = feature_cache.load_feature_cache(folder, dataset=data.name)
    if len(cached) != len(data):
        raise DatasetError(f"{folder}: {len(cached)} rows cached, the dataset has {len(data)}")
    cached.extras = dict(data.extras, **cached.extras, feature_cache_dir=folder)
    cached.splits = {name: np.asarray(index, np.int64) for name, index in data.splits.items()}
    return cached
