"""tf.data input pipelines over a PairedDataset: ({"image", "text"}, labels) batches.

- The order is a pure function of (seed, epoch): each epoch's permutation comes from a stateless
  shuffle, so a run resumed at epoch e sees exactly the batches an uninterrupted run would.
- Images given as files are read, decoded and resized in parallel, one file at a time, so a
  dataset never has to fit in memory; arrays (pixels, features, bags of words, possibly
  memory-mapped) are fetched a batch at a time by NumPy indexing.
- Training images get a random crop (scale 0.8-1) and a random horizontal flip.
- Raw text goes through the text featurizer layer, batched.
"""

import numpy as np
import tensorflow as tf

from daah_tf.data.base import PairedDataset

AUTOTUNE = tf.data.AUTOTUNE
_CROP_SCALE = (0.8, 1.0)


def epoch_order(num_rows, seed, epoch):
    """The visiting order of one training epoch: (num_rows,) int64 permutation."""
    seed = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.stateless_shuffle(tf.range(num_rows, dtype=tf.int64), seed)


def _fetcher(array, dtype):
    """A tf function (B,) int64 rows -> array[rows] as `dtype`, by NumPy indexing."""

    def fetch(rows):
        # Sorted reads are much faster on memory-mapped files; undo the sort afterwards.
        order = np.argsort(rows, kind="stable")
        values = np.asarray(array[rows[order]], dtype=dtype)
        out = np.empty_like(values)
        out[order] = values
        return out

    def apply(rows):
        values = tf.numpy_function(fetch, [rows], tf.as_dtype(dtype), stateful=False)
        values.set_shape((None, *array.shape[1:]))
        return values

    return apply


def decode_image_file(path, image_size):
    """A JPEG/PNG/GIF/BMP file -> (S, S, 3) float32 in [0, 255]."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size), antialias=True)
    return tf.clip_by_value(image, 0.0, 255.0)


def augment_images(images, seed):
    """Random crop (a square of 0.8-1 of the side, resized back) and horizontal flip.

    images: (B, S, S, C) float32; seed: (2,) int tensor, unique per batch.
    """
    batch = tf.shape(images)[0]
    uniform = tf.random.stateless_uniform((batch, 4), seed=seed)
    scale = _CROP_SCALE[0] + (_CROP_SCALE[1] - _CROP_SCALE[0]) * uniform[:, 0]
    y0 = (1.0 - scale) * uniform[:, 1]
    x0 = (1.0 - scale) * uniform[:, 2]
    y1, x1 = y0 + scale, x0 + scale
    flip = uniform[:, 3] < 0.5
    # crop_and_resize flips a box whose x1 < x0: crop and flip in one op.
    boxes = tf.stack([y0, tf.where(flip, x1, x0), y1, tf.where(flip, x0, x1)], axis=1)
    size = tf.shape(images)[1:3]
    return tf.image.crop_and_resize(images, boxes, tf.range(batch), size)


def make_pipeline(
    data: PairedDataset,
    split_index,
    batch_size,
    *,
    training,
    seed=0,
    first_epoch=0,
    last_epoch=1,
    text_featurizer=None,
    image_size=None,
    augment=True,
    with_labels=True,
    max_batches_per_epoch=None,
):
    """Batches of one split.

    Args:
        data: the dataset.
        split_index: (n,) int64 rows of `data` in this split.
        batch_size: B. Training drops the last partial batch (a triplet loss over a handful of
            pairs is noise); evaluation keeps every row, in split order.
        training: shuffle per epoch (for epochs first_epoch..last_epoch-1, concatenated) and
            augment images.
        seed: the order's and the augmentation's seed.
        text_featurizer: a `TextFeaturizer`, required when data.text_kind == "raw".
        image_size: S, required when data.image_kind == "paths": files (and pixel arrays of
            another size) are resized to S x S.
        augment: random crop and flip in training (pixels and files only).
        with_labels: yield (inputs, labels) if True, else inputs only.
        max_batches_per_epoch: training only: use the first N batches of each epoch.

    Returns:
        A tf.data.Dataset of ({"image": (B, ...) float32, "text": (B, V) float32}, (B, L)).
    """
    rows = np.asarray(split_index, dtype=np.int64)
    if len(rows) == 0:
        raise ValueError(f"{data.name}: the split to feed is empty")
    rows_tensor = tf.constant(rows)
    paths = None
    if data.image_kind == "paths":
        if image_size is None:
            raise ValueError("image_size is required for image files")
        paths = tf.constant([str(p) for p in data.images])

    def epoch_batches(epoch):
        """One epoch: batches of (epoch, positions (B,), rows (B,)[, decoded images])."""
        if training:
            order = epoch_order(len(rows), seed, epoch)
        else:
            order = tf.range(len(rows), dtype=tf.int64)
        elements = tf.data.Dataset.from_tensor_slices(order).map(
            lambda position: (epoch, position, tf.gather(rows_tensor, position))
        )
        if paths is not None:
            elements = elements.map(
                lambda e, p, r: (e, p, r, decode_image_file(tf.gather(paths, r), image_size)),
                num_parallel_calls=AUTOTUNE, deterministic=True,
            )
        # Batched inside the epoch, so that no batch straddles two epochs: epoch e's batches
        # are the same whether a run starts at epoch 0 or resumes at e.
        batches = elements.batch(batch_size, drop_remainder=training)
        return batches.take(max_batches_per_epoch) if max_batches_per_epoch else batches

    if training:
        dataset = tf.data.Dataset.range(first_epoch, last_epoch).flat_map(epoch_batches)
    else:
        dataset = epoch_batches(tf.constant(0, tf.int64))

    fetch_labels = _fetcher(data.labels, np.float32)
    fetch_images = None if data.image_kind == "paths" else _fetcher(data.images, np.float32)
    fetch_texts = _fetcher(data.texts, np.float32) if data.text_kind == "bow" else None
    raw_texts = None
    if data.text_kind == "raw":
        if text_featurizer is None:
            raise ValueError(f"{data.name} has raw text: a text featurizer is required")
        raw_texts = tf.constant([str(t) for t in data.texts])
        vectorize = text_featurizer.layer
    spatial = data.image_kind in ("pixels", "paths")
    resize_pixels = (data.image_kind == "pixels" and image_size is not None
                     and tuple(data.images.shape[1:3]) != (image_size, image_size))

    def assemble(epoch, position, row, *decoded):
        images = decoded[0] if decoded else fetch_images(row)
        if resize_pixels:
            images = tf.image.resize(images, (image_size, image_size), antialias=True)
        if training and augment and spatial:
            seed_pair = tf.stack([tf.cast(seed, tf.int64) + 1, epoch[0] * 1_000_003 + position[0]])
            images = augment_images(images, seed_pair)
        if raw_texts is not None:
            texts = vectorize(tf.gather(raw_texts, row))
        else:
            texts = fetch_texts(row)
        inputs = {"image": images, "text": tf.cast(texts, tf.float32)}
        return (inputs, fetch_labels(row)) if with_labels else inputs

    dataset = dataset.map(assemble, num_parallel_calls=AUTOTUNE, deterministic=True)
    return dataset.prefetch(AUTOTUNE)


def steps_per_epoch(num_rows, batch_size):
    """Training steps in one epoch (the last partial batch is dropped)."""
    return num_rows // batch_size
