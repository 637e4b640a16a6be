"""What retrieval numbers do not show: collapsed codes, and where image attention looks
(NumPy only)."""

import numpy as np


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


def upsample_cells(masks, size):
    """(..., h, w) cell masks -> (..., S, S), nearest: cell (i, j) covers rows [i*S/h, (i+1)*S/h)
    and columns [j*S/w, (j+1)*S/w) of the image."""
    masks = np.asarray(masks)
    h, w = masks.shape[-2:]
    ys = np.arange(size) * h // size
    xs = np.arange(size) * w // size
    return masks[..., ys, :][..., xs]


def _object_pixels(boxes, image_size):
    """(n, K, 4) boxes (rows of -1 absent) -> (n, S, S) bool: the union of each row's boxes."""
    objects = np.zeros((len(boxes), image_size, image_size), bool)
    for row, row_boxes in enumerate(boxes):
        for y0, x0, y1, x1 in row_boxes:
            if y0 >= 0:
                objects[row, y0:y1, x0:x1] = True
    return objects


def _cell_counts(objects, h, w):
    """(n, S, S) object pixels -> ((n, h*w) object pixels per cell, (h*w,) pixels per cell),
    cells as `upsample_cells` lays them out."""
    size = objects.shape[-1]
    cell_of_row = np.arange(size) * h // size
    cell_of_column = np.arange(size) * w // size
    cell = (cell_of_row[:, None] * w + cell_of_column[None, :]).ravel()  # (S*S,)
    per_cell = np.stack([np.bincount(cell, weights=o.ravel(), minlength=h * w)
                         for o in objects.reshape(len(objects), -1)])
    return per_cell, np.bincount(cell, minlength=h * w).astype(float)


def reference_cell_ious(boxes, image_size, h, w):
    """What a mask of h x w cells can score against the object boxes, per image:

    - "touched_cells_iou": the mask of every cell an object touches. An eraser that hides all
      of every object (what L_adv asks of the attention) scores about this.
    - "best_cells_iou": the best any cell mask can do. IoU = inter / (object + outside) over
      chosen cells is a ratio of sums, so the best set is a prefix of the cells sorted by their
      object share (a threshold on that share); every prefix is tried.

    Args:
        boxes: (n, K, 4) object boxes (y0, x0, y1, x1) in pixels; rows of -1 are absent.
        image_size: S.
        h, w: the mask's cells.

    Returns:
        {"touched_cells_iou": float, "best_cells_iou": float}, means over the n images.
    """
    objects = _object_pixels(boxes, image_size)
    return _reference_ious(objects, *_cell_counts(objects, h, w))


def _reference_ious(objects, inside, cell_pixels):
    """`reference_cell_ious` from (n, S, S) object pixels and their `_cell_counts`."""
    area = objects.sum(axis=(1, 2)).astype(float)
    touched = inside > 0
    touched_iou = (inside * touched).sum(1) / np.maximum(
        area + ((cell_pixels - inside) * touched).sum(1), 1)
    order = np.argsort(-(inside / cell_pixels), axis=1, kind="stable")
    sorted_inside = np.take_along_axis(inside, order, axis=1)
    sorted_outside = cell_pixels[order] - sorted_inside
    prefix_iou = np.cumsum(sorted_inside, 1) / np.maximum(
        area[:, None] + np.cumsum(sorted_outside, 1), 1)
    return {"touched_cells_iou": float(np.mean(touched_iou)),
            "best_cells_iou": float(np.mean(prefix_iou.max(axis=1)))}


def mask_iou(masks, boxes, image_size, seed=0):
    """How well image masks cover the known objects, against random masks of the same size and
    against what any mask of these cells can reach.

    Args:
        masks: (n, h, w) {0,1} attention masks at feature-map resolution.
        boxes: (n, K, 4) object boxes (y0, x0, y1, x1) in pixels; rows of -1 are absent.
        image_size: S, the side of the images the boxes refer to.
        seed: seed of the random masks.

    Returns:
        {"mask_iou": mean IoU of the masks (upsampled to S x S) with the union of the boxes,
         "random_mask_iou": the same for random masks with as many cells per image,
         "touched_cells_iou", "best_cells_iou": see `reference_cell_ious`,
         "mask_cell_precision": the share of the masks' cells that an object touches,
         "object_cell_recall": the share of the cells objects touch that the masks hold}
        (the last two pooled over all images).
    """
    masks = np.asarray(masks) > 0.5
    n, h, w = masks.shape
    objects = _object_pixels(boxes, image_size)
    inside, cell_pixels = _cell_counts(objects, h, w)
    touched = inside.reshape(n, h, w) > 0
    hits = np.logical_and(masks, touched).sum()
    rng = np.random.default_rng(seed)
    random_masks = np.zeros_like(masks)
    for row in range(n):
        cells = rng.choice(h * w, size=int(masks[row].sum()), replace=False)
        random_masks[row].flat[cells] = True

    def iou(cell_masks):
        pixels = upsample_cells(cell_masks, image_size)
        inter = np.logical_and(pixels, objects).sum(axis=(1, 2))
        union = np.logical_or(pixels, objects).sum(axis=(1, 2))
        return float(np.mean(inter / np.maximum(union, 1)))

    return {"mask_iou": iou(masks), "random_mask_iou": iou(random_masks),
            **_reference_ious(objects, inside, cell_pixels),
            "mask_cell_precision": float(hits / max(masks.sum(), 1)),
            "object_cell_recall": float(hits / max(touched.sum(), 1))}
