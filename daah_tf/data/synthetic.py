"""The built-in synthetic dataset: objects on clutter, words among noise, several labels.

Made so that attention has something to find and the result can be checked:

- image: a cluttered background (noise and random coloured rectangles) with one object per
  label, each a class-specific coloured pattern at a random position; the object boxes are
  kept, so the learned image mask can be scored against them (intersection over union);
- text: a few class-specific words per label among more noise words, as raw text;
- labels: one or two of `num_classes` classes per pair.

Everything is drawn from one seed, so the data is the same on every machine.
"""

import numpy as np

from daah_tf.data.base import PairedDataset
from daah_tf.data.splits import random_protocol_split

CLASS_WORDS = 6
NOISE_WORDS = 60
WORDS_PER_LABEL = 3
NOISE_PER_TEXT = 6
PATTERN_CELLS = 4


def _class_prototypes(rng, num_classes, object_size):
    """A distinct (pattern, colour) per class: (C, s, s, 3) float in [0, 255]."""
    cell = object_size // PATTERN_CELLS
    prototypes = []
    for _ in range(num_classes):
        pattern = rng.random((PATTERN_CELLS, PATTERN_CELLS)) < 0.5
        pattern[0, 0] = pattern[-1, -1] = True  # never empty
        colour = rng.uniform(60, 255, size=3)
        upscaled = np.kron(pattern, np.ones((cell, cell)))[..., None]
        prototypes.append(upscaled * colour + (1 - upscaled) * 20.0)
    return np.stack(prototypes)


def _draw_labels(rng, num_pairs, num_classes):
    labels = np.zeros((num_pairs, num_classes), np.float32)
    for row in range(num_pairs):
        count = 2 if rng.random() < 0.35 else 1
        labels[row, rng.choice(num_classes, size=count, replace=False)] = 1.0
    return labels


def _place_boxes(rng, count, image_size, object_size):
    """Non-overlapping (y0, x0, y1, x1) boxes."""
    boxes = []
    while len(boxes) < count:
        y, x = rng.integers(0, image_size - object_size + 1, size=2)
        box = (y, x, y + object_size, x + object_size)
        if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1]
               for b in boxes):
            boxes.append(box)
    return boxes


def _draw_image(rng, classes, prototypes, image_size, object_size):
    image = rng.uniform(0, 90, size=(image_size, image_size, 3))
    for _ in range(6):  # clutter: rectangles in random colours, not class-specific
        h, w = rng.integers(2, object_size // 2 + 1, size=2)
        y, x = rng.integers(0, image_size - max(h, w), size=2)
        image[y:y + h, x:x + w] = rng.uniform(0, 255, size=3)
    boxes = _place_boxes(rng, len(classes), image_size, object_size)
    for label, (y0, x0, y1, x1) in zip(classes, boxes, strict=True):
        image[y0:y1, x0:x1] = prototypes[label]
    return np.clip(image, 0, 255).astype(np.uint8), boxes


def _draw_text(rng, classes, num_classes):
    words = [f"w{label}x{rng.integers(CLASS_WORDS)}" for label in classes
             for _ in range(WORDS_PER_LABEL)]
    words += [f"noise{rng.integers(NOISE_WORDS)}" for _ in range(NOISE_PER_TEXT)]
    rng.shuffle(words)
    return " ".join(words)


def make_synthetic(num_pairs=3000, num_classes=8, image_size=48, seed=0, num_query=None):
    """The synthetic dataset.

    Args:
        num_pairs: N.
        num_classes: number of labels L.
        image_size: side of the square RGB images.
        seed: the one seed every draw comes from.
        num_query: query-set size; default 10% of N. The rest is the database, all of which is
            training data (as for Wiki).

    Returns:
        A PairedDataset with image_kind "pixels" (N, S, S, 3) uint8, text_kind "raw", and
        extras["object_boxes"] (N, 2, 4) int32 (y0, x0, y1, x1 in pixels; -1 rows when the pair
        has a single object).
    """
    if image_size < 16:
        raise ValueError(f"synthetic image_size must be at least 16, got {image_size}")
    rng = np.random.default_rng(seed)
    object_size = max(PATTERN_CELLS, (image_size // 4) // PATTERN_CELLS * PATTERN_CELLS)
    prototypes = _class_prototypes(rng, num_classes, object_size)
    labels = _draw_labels(rng, num_pairs, num_classes)
    images = np.empty((num_pairs, image_size, image_size, 3), np.uint8)
    boxes = -np.ones((num_pairs, 2, 4), np.int32)
    texts = []
    for row in range(num_pairs):
        classes = np.flatnonzero(labels[row])
        images[row], row_boxes = _draw_image(rng, classes, prototypes, image_size, object_size)
        boxes[row, :len(row_boxes)] = row_boxes
        texts.append(_draw_text(rng, classes, num_classes))
    num_query = num_pairs // 10 if num_query is None else num_query
    splits = random_protocol_split(num_pairs, num_query, num_pairs - num_query, seed)
    return PairedDataset(
        name="synthetic",
        images=images,
        image_kind="pixels",
        texts=np.asarray(texts, dtype=object),
        text_kind="raw",
        labels=labels,
        label_names=[f"class{c}" for c in range(num_classes)],
        splits=splits,
        extras={"object_boxes": boxes},
    )
