"""Retrieval evaluation of a model on a dataset split: codes, mAP, chance level, mask IoU."""

import numpy as np
import tensorflow as tf

from daah_tf import metrics
from daah_tf.data.pipeline import make_pipeline
from daah_tf.losses import binary_codes

DIRECTIONS = {  # name: (query modality, database modality)
    "i2t": ("image", "text"),
    "t2i": ("text", "image"),
    "i2i": ("image", "image"),
    "t2t": ("text", "text"),
}


class CodeEncoder:
    """Encodes pipeline batches into +-1 int8 codes with one compiled function per model."""

    def __init__(self, model):
        self.model = model

        # Plain tensor code (nothing for autograph to convert); batch sizes vary (last batch).
        @tf.function(autograph=False, reduce_retracing=True)
        def encode(inputs):
            return (binary_codes(model.encode_image(inputs["image"])),
                    binary_codes(model.encode_text(inputs["text"])))

        self._encode = encode

    def encode_split(self, data, index, batch_size, text_featurizer=None, image_size=None):
        """Codes of one split, in split order: {"image": (n, q) int8, "text": (n, q) int8}."""
        pipeline = make_pipeline(data, index, batch_size, training=False,
                                 text_featurizer=text_featurizer, image_size=image_size,
                                 with_labels=False)
        images, texts = [], []
        for inputs in pipeline:
            image_codes, text_codes = self._encode(inputs)
            images.append(image_codes.numpy())
            texts.append(text_codes.numpy())
        return {"image": np.concatenate(images), "text": np.concatenate(texts)}


def retrieval_maps(query_codes, query_labels, database_codes, database_labels, top_k=None):
    """mAP (tie rule: database index) in the four directions: {"i2t", "t2i", "i2i", "t2t"}."""
    return {
        name: metrics.mean_average_precision(
            query_codes[source], database_codes[target], query_labels, database_labels,
            top_k=top_k,
        )
        for name, (source, target) in DIRECTIONS.items()
    }


def chance_map(query_labels, database_labels):
    """The mAP of a random ranking: the mean fraction of relevant database items per query."""
    relevant = (np.asarray(query_labels) @ np.asarray(database_labels).T) > 0
    return float(relevant.mean())


def bit_balance(codes):
    """How constant the bits of a set of codes are: the mean over bits of |mean over items of
    sign(code)|. 0 = every bit split evenly, 1 = every bit the same for all items (collapse).

    Args:
        codes: (n, q) codes (any sign convention: > 0 is +1, else -1), n >= 1.
    """
    signs = np.where(np.asarray(codes) > 0, 1.0, -1.0)
    return float(np.abs(signs.mean(axis=0)).mean())


def distinct_codes(codes):
    """The number of different codes among the rows of (n, q) codes (by sign)."""
    bits = np.asarray(codes) > 0
    if bits.shape[0] == 0:
        return 0
    return int(np.unique(np.packbits(bits, axis=1), axis=0).shape[0])


def collapse_stats(database_codes, database_labels):
    """Collapse measures of a run's database codes, per modality: bit_balance_image/text,
    distinct_codes_image/text, and num_labels (the number of label columns)."""
    stats = {"num_labels": int(np.asarray(database_labels).shape[1])}
    for modality in ("image", "text"):
        stats[f"bit_balance_{modality}"] = bit_balance(database_codes[modality])
        stats[f"distinct_codes_{modality}"] = distinct_codes(database_codes[modality])
    return stats


def mask_iou(masks, boxes, image_size, seed=0):
    """How well image masks cover the known objects, against random masks of the same size.

    Args:
        masks: (n, h, w) {0,1} attention masks at feature-map resolution.
        boxes: (n, K, 4) object boxes (y0, x0, y1, x1) in pixels; rows of -1 are absent.
        image_size: S, the side of the images the boxes refer to.
        seed: seed of the random masks.

    Returns:
        {"mask_iou": mean IoU of the masks (upsampled to S x S) with the union of the boxes,
         "random_mask_iou": the same for random masks with as many cells per image}.
    """
    masks = np.asarray(masks) > 0.5
    n, h, w = masks.shape
    objects = np.zeros((n, image_size, image_size), bool)
    for row in range(n):
        for y0, x0, y1, x1 in boxes[row]:
            if y0 >= 0:
                objects[row, y0:y1, x0:x1] = True
    rng = np.random.default_rng(seed)
    random_masks = np.zeros_like(masks)
    for row in range(n):
        cells = rng.choice(h * w, size=int(masks[row].sum()), replace=False)
        random_masks[row].flat[cells] = True

    def iou(cell_masks):
        # Nearest upsampling: cell (i, j) covers rows [i*S/h, (i+1)*S/h) of the image.
        ys = np.arange(image_size) * h // image_size
        xs = np.arange(image_size) * w // image_size
        pixels = cell_masks[:, ys][:, :, xs]
        inter = np.logical_and(pixels, objects).sum(axis=(1, 2))
        union = np.logical_or(pixels, objects).sum(axis=(1, 2))
        return float(np.mean(inter / np.maximum(union, 1)))

    return {"mask_iou": iou(masks), "random_mask_iou": iou(random_masks)}
