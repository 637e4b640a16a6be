"""The collapse measures written to metrics.json (bit balance, distinct codes) and the image
mask / object IoU with its references against brute force, and on hand-made collapsed and
balanced codes."""

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from daah_tf.evaluation.diagnostics import (
    bit_balance,
    collapse_stats,
    distinct_codes,
    mask_iou,
    reference_cell_ious,
)


def brute_bit_balance(codes):
    """Per bit: count the +1s and -1s one item at a time; |plus - minus| / n; mean over bits."""
    n, q = len(codes), len(codes[0])
    total = 0.0
    for bit in range(q):
        plus = sum(1 for row in range(n) if codes[row][bit] > 0)
        total += abs(plus - (n - plus)) / n
    return total / q


def brute_distinct(codes):
    seen = []
    for row in codes:
        key = tuple(1 if value > 0 else -1 for value in row)
        if key not in seen:
            seen.append(key)
    return len(seen)


CODES = st.integers(1, 40).flatmap(lambda n: st.integers(1, 20).flatmap(
    lambda q: st.lists(st.lists(st.sampled_from([-1, 1]), min_size=q, max_size=q),
                       min_size=n, max_size=n)))


@settings(max_examples=200, deadline=None)
@given(codes=CODES)
def test_against_brute_force(codes):
    array = np.asarray(codes, np.int8)
    assert np.isclose(bit_balance(array), brute_bit_balance(codes))
    assert distinct_codes(array) == brute_distinct(codes)
    # float codes before sign (> 0 is +1) give the same numbers
    real = array * np.random.default_rng(0).uniform(0.1, 2.0, array.shape)
    assert np.isclose(bit_balance(real), bit_balance(array))
    assert distinct_codes(real) == distinct_codes(array)


def test_collapsed_and_balanced_codes():
    constant = np.tile(np.asarray([1, -1, 1, 1, -1, -1, 1, -1, 1], np.int8), (50, 1))
    assert bit_balance(constant) == 1.0 and distinct_codes(constant) == 1
    # every code of 4 bits once: each bit is +1 for exactly half the items
    every = np.asarray([[1 if (i >> b) & 1 else -1 for b in range(4)] for i in range(16)])
    assert bit_balance(every) == 0.0 and distinct_codes(every) == 16
    # 9 bits (more than a byte when packed) differing only in the last bit
    last = np.tile(constant[:1], (4, 1))
    last[::2, -1] = -last[::2, -1]
    assert distinct_codes(last) == 2
    assert np.isclose(bit_balance(last), 8 / 9)


def test_collapse_stats_per_modality():
    image = np.ones((6, 8), np.int8)
    text = np.where(np.arange(48).reshape(6, 8) % 3 == 0, 1, -1).astype(np.int8)
    labels = np.eye(6, 5, dtype=np.float32)
    stats = collapse_stats({"image": image, "text": text}, labels)
    assert stats == {"num_labels": 5, "bit_balance_image": 1.0,
                     "distinct_codes_image": 1, "bit_balance_text": bit_balance(text),
                     "distinct_codes_text": distinct_codes(text)}
    assert stats["distinct_codes_text"] == brute_distinct(text.tolist())


def brute_iou(cells, boxes, size, h, w):
    """IoU of one image's cell mask (h, w) with its boxes, pixel by pixel: pixel (y, x) is in
    cell (y * h // size, x * w // size)."""
    inter = union = 0
    for y in range(size):
        for x in range(size):
            in_mask = bool(cells[y * h // size, x * w // size])
            in_object = any(y0 <= y < y1 and x0 <= x < x1 for y0, x0, y1, x1 in boxes if y0 >= 0)
            inter += in_mask and in_object
            union += in_mask or in_object
    return inter / max(union, 1)


BOXES = st.integers(1, 3).flatmap(lambda n: st.lists(
    st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(1, 6), st.integers(1, 6)),
    min_size=1, max_size=2).map(lambda boxes: (n, boxes)))


@settings(max_examples=25, deadline=None)
@given(images=st.lists(BOXES, min_size=1, max_size=3), h=st.integers(1, 3), w=st.integers(1, 3))
def test_reference_ious_against_every_cell_mask(images, h, w):
    """On a 10-pixel side (cells of uneven size), the best cell mask found by enumerating all
    2^(h*w) masks and the mask of the touched cells, against `reference_cell_ious`."""
    size = 10
    boxes = -np.ones((len(images), 2, 4), np.int64)
    for row, (_, row_boxes) in enumerate(images):
        for k, (y, x, dy, dx) in enumerate(row_boxes):
            boxes[row, k] = (y, x, min(y + dy, size), min(x + dx, size))
    best, touched = [], []
    for row_boxes in boxes:
        masks = [np.asarray(bits, bool).reshape(h, w)
                 for bits in itertools.product([0, 1], repeat=h * w)]
        best.append(max(brute_iou(m, row_boxes, size, h, w) for m in masks))
        cells = np.zeros((h, w), bool)
        for y0, x0, y1, x1 in row_boxes:
            if y0 >= 0:
                for y in range(y0, y1):
                    for x in range(x0, x1):
                        cells[y * h // size, x * w // size] = True
        touched.append(brute_iou(cells, row_boxes, size, h, w))
    result = reference_cell_ious(boxes, size, h, w)
    assert np.isclose(result["best_cells_iou"], np.mean(best))
    assert np.isclose(result["touched_cells_iou"], np.mean(touched))


def test_mask_iou_against_brute_force():
    rng = np.random.default_rng(3)
    size, h, w = 12, 3, 4
    boxes = np.asarray([[[0, 0, 5, 5], [-1, -1, -1, -1]], [[2, 6, 9, 12], [7, 0, 12, 3]],
                        [[4, 4, 8, 8], [-1, -1, -1, -1]]])
    masks = rng.random((3, h, w)) > 0.5
    result = mask_iou(masks, boxes, size)
    brute = [brute_iou(m, b, size, h, w) for m, b in zip(masks, boxes, strict=True)]
    assert np.isclose(result["mask_iou"], np.mean(brute))
    assert 0 <= result["random_mask_iou"] <= result["best_cells_iou"]
    assert result["touched_cells_iou"] <= result["best_cells_iou"] <= 1
    # the touched cells' own mask scores exactly the touched reference
    touched = np.zeros_like(masks)
    for row, row_boxes in enumerate(boxes):
        for y0, x0, y1, x1 in row_boxes[row_boxes[:, 0] >= 0]:
            touched[row, y0 * h // size:(y1 - 1) * h // size + 1,
                    x0 * w // size:(x1 - 1) * w // size + 1] = True
    assert np.isclose(mask_iou(touched, boxes, size)["mask_iou"], result["touched_cells_iou"])
    # cell precision / recall against the touched cells, counted one cell at a time
    hits = sum(1 for r in range(3) for i in range(h) for j in range(w)
               if masks[r, i, j] and touched[r, i, j])
    assert np.isclose(result["mask_cell_precision"], hits / masks.sum())
    assert np.isclose(result["object_cell_recall"], hits / touched.sum())
    exact = mask_iou(touched, boxes, size)
    assert exact["mask_cell_precision"] == 1.0 and exact["object_cell_recall"] == 1.0
