"""Checks and reshapes what a .mat file holds into (N, ...) arrays, one row per pair.

`infer_num_rows` finds the N every array agrees on; `orient`, `to_nhwc`, `as_matrix`,
`as_labels`, `as_images` and `as_features` accept the (N, d) / (d, N) and N-first / N-last
orientations real files use (MATLAB's H x W x 3 x N included); `check_finite` and
`check_binary` refuse NaN/Inf and non-multi-hot labels. Errors name the file, the key and the
shapes (or the first bad row).
"""

import numpy as np

from daah_tf.data.base import DatasetError

# Rows per chunk when scanning large arrays, so a check never doubles a multi-GB array in memory.
_CHUNK_ROWS = 4096


def _row_axes(shape):
    """Axes that may hold the N pairs: either one of a matrix, first or last of a 4-D array."""
    if len(shape) == 0:
        return ()
    if len(shape) == 1:
        return (shape[0],)
    if len(shape) == 2:
        return tuple(shape)
    return (shape[0], shape[-1])


def infer_num_rows(arrays, preferred=None):
    """The number of pairs N that every array agrees on.

    Args:
        arrays: {description: array}, e.g. {"f.mat:LAll": labels, "f.mat:YAll": texts}; the
            first entry breaks ties (N = its first axis when that fits every array).
        preferred: a standard N (e.g. 20015), chosen whenever it fits every array.

    Raises:
        DatasetError listing every array's shape when no size is shared by all of them.
    """
    candidates = None
    for array in arrays.values():
        sizes = set(_row_axes(np.shape(array)))
        candidates = sizes if candidates is None else candidates & sizes
    if not candidates:
        shapes = "; ".join(f"{name} {np.shape(array)}" for name, array in arrays.items())
        raise DatasetError(f"row counts differ between modalities: {shapes}")
    if preferred in candidates:
        return preferred
    first = np.shape(next(iter(arrays.values())))
    for size in (first[0], first[-1]):
        if size in candidates:
            return int(size)
    return int(max(candidates))


def orient(array, num_rows, name, path):
    """A matrix with one row per pair: accepts (N, d) or (d, N) (and (N,) as (N, 1)).

    (N, d) wins when both fit (a square matrix is taken as stored).

    Args:
        array: the matrix as read.
        num_rows: N.
        name: the array's key, for messages.
        path: its file, for messages.

    Returns:
        (N, d) array (a view when possible; dtype unchanged).

    Raises:
        DatasetError naming the file, the key, its shape and N when neither axis is N.
    """
    array = np.asarray(array)
    if array.ndim == 1 and len(array) == num_rows:
        return array.reshape(num_rows, 1)
    if array.ndim == 2 and array.shape[0] == num_rows:
        return array
    if array.ndim == 2 and array.shape[1] == num_rows:
        return array.T
    raise DatasetError(f"{path}: {name} has shape {array.shape}; expected ({num_rows}, d) or "
                       f"(d, {num_rows}) to match the other arrays' {num_rows} rows")


def _move_rows_first(array, num_rows, name, path):
    if array.shape[0] == num_rows:
        return array
    if array.shape[-1] == num_rows:
        return np.moveaxis(array, -1, 0)
    raise DatasetError(f"{path}: {name} has shape {array.shape}; expected {num_rows} "
                       f"images along its first or last axis")


def _as_uint8(array, name, path):
    """Pixels as uint8, when the stored values are whole numbers in [0, 255]."""
    if array.dtype == np.uint8:
        return array
    for start in range(0, len(array), _CHUNK_ROWS):
        chunk = array[start:start + _CHUNK_ROWS]
        bad = ~(np.isfinite(chunk) & (chunk >= 0) & (chunk <= 255) & (chunk == np.round(chunk)))
        if bad.any():
            row = start + int(np.argmax(bad.reshape(len(chunk), -1).any(axis=1)))
            raise DatasetError(f"{path}: {name} image {row} has values outside whole numbers "
                               f"0..255 (dtype {array.dtype}); expected uint8 pixels")
    return array.astype(np.uint8)


def to_nhwc(array, num_rows, name, path):
    """Images as (N, H, W, 3) uint8, from any of the 4-D layouts real files use.

    Accepts N first or last (MATLAB's H x W x 3 x N included) and channels first or last of the
    three image axes (HWC or CHW). With v7.3 files `load_mat` has already undone the HDF5
    transposition, so the DCMH `images` (h5py shape N x 3 x W x H) and the DJSRH `IAll` both
    arrive as MATLAB's 224 x 224 x 3 x N. Channels last wins when both ends have size 3.

    Returns:
        A C-contiguous (N, H, W, 3) uint8 copy.

    Raises:
        DatasetError naming the file, the key and the shape otherwise.
    """
    array = np.asarray(array)
    if array.ndim != 4:
        raise DatasetError(f"{path}: {name} has shape {array.shape}; expected 4-D images "
                           f"(N, H, W, 3), (N, 3, H, W) or MATLAB's (H, W, 3, N)")
    array = _move_rows_first(array, num_rows, name, path)
    if array.shape[3] != 3:
        if array.shape[1] != 3:
            raise DatasetError(f"{path}: {name} has shape {array.shape} with N={num_rows} "
                               f"first; expected 3 colour channels first or last")
        array = np.transpose(array, (0, 2, 3, 1))  # CHW -> HWC
    return np.ascontiguousarray(_as_uint8(array, name, path))


def check_finite(array, name, path):
    """Raises DatasetError naming the file, the key and the first row with NaN or Inf.

    Args:
        array: (N, ...) numeric array, rows = pairs.
    """
    if array.dtype.kind != "f":
        return
    for start in range(0, len(array), _CHUNK_ROWS):
        chunk = array[start:start + _CHUNK_ROWS]
        bad_rows = ~np.isfinite(chunk.reshape(len(chunk), -1)).all(axis=1)
        if bad_rows.any():
            row = start + int(np.argmax(bad_rows))
            raise DatasetError(f"{path}: {name} row {row} (0-based) holds NaN or Inf values")


def check_binary(labels, name, path):
    """Raises DatasetError naming the first row of a label matrix with a value other than 0/1."""
    check_finite(labels, name, path)
    bad_rows = ~np.isin(labels, (0, 1)).all(axis=1)
    if bad_rows.any():
        row = int(np.argmax(bad_rows))
        raise DatasetError(f"{path}: {name} row {row} (0-based) has values other than 0 and 1: "
                           f"labels must be multi-hot")


def as_matrix(array, num_rows, name, path):
    """(N, d) float32 from a (N, d) / (d, N) matrix, checked for NaN and Inf."""
    matrix = orient(array, num_rows, name, path)
    check_finite(matrix, name, path)
    return matrix.astype(np.float32)


def as_labels(array, num_rows, name, path):
    """(N, L) float32 multi-hot from a (N, L) / (L, N) 0/1 matrix."""
    labels = orient(array, num_rows, name, path)
    check_binary(labels, name, path)
    return labels.astype(np.float32)


def as_images(array, num_rows, name, path):
    """Image input and its kind: 4-D -> ("pixels", (N, H, W, 3) uint8), 2-D -> ("features",
    (N, d) float32)."""
    if np.ndim(array) == 4:
        return "pixels", to_nhwc(array, num_rows, name, path)
    return "features", as_matrix(array, num_rows, name, path)


def as_features(array, num_rows, name, path):
    """Image features as float32: (N, d) from a matrix, or (N, h, w, c) from a 4-D array with N
    first or last (the other axes kept in order)."""
    if np.ndim(array) == 4:
        features = _move_rows_first(np.asarray(array), num_rows, name, path)
        check_finite(features, name, path)
        return np.ascontiguousarray(features, dtype=np.float32)
    return as_matrix(array, num_rows, name, path)
