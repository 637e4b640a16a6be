"""Reading MATLAB .mat files safely: the variables a file holds, by name, as NumPy arrays.

`load_mat` reads MATLAB v4/v5/v7 files with `scipy.io.loadmat` and v7.3 files (HDF5) with h5py;
neither ever unpickles anything. Key names match exactly first, then case-insensitively (`lall`,
`LALL`, `LAll`). Every failure is a DatasetError that names the file (and the key).

MATLAB v7.3 and axis order: MATLAB arrays are column-major, HDF5 datasets row-major, so a MATLAB
array of size (a, b, c) appears in h5py with shape (c, b, a). `load_mat` reverses the axes of
every HDF5 array (a transposing view, no copy), so both formats give MATLAB's own shape, e.g.
`LAll` 20015x24 and `IAll` 224x224x3x20015 either way.
"""

import contextlib
import os

import h5py
import numpy as np
import scipy.io
import scipy.sparse

from daah_tf.data.base import DatasetError

# Variables MATLAB v7.3 files keep for their own bookkeeping, not user data.
_HDF5_INTERNAL_PREFIX = "#"
_HDF5, _V5 = "HDF5 / MATLAB v7.3 file", "MATLAB .mat file"


def _alternatives(entry):
    """An expected-key entry as a tuple of names: "LAll" or ("LAll", "labels")."""
    return (entry,) if isinstance(entry, str) else tuple(entry)


def _describe_expected(expected_keys):
    return ", ".join(" or ".join(_alternatives(entry)) for entry in expected_keys)


def match_key(entry, found, path):
    """The key of `found` that satisfies `entry`: exact match first, then case-insensitive."""
    alternatives = _alternatives(entry)
    for name in alternatives:
        if name in found:
            return name
    for name in alternatives:
        matches = [key for key in found if key.lower() == name.lower()]
        if len(matches) > 1:
            raise DatasetError(f"{path}: keys {matches} differ only in case; cannot tell which "
                               f"one is {name!r}")
        if matches:
            return matches[0]
    return None


def resolve_keys(path, found, expected_keys):
    """Maps each expected entry's canonical (first) name to the file's key.

    Raises:
        DatasetError naming the file, listing the keys found and the keys expected, when an
        entry matches no key.
    """
    resolved, missing = {}, []
    for entry in expected_keys:
        key = match_key(entry, found, path)
        if key is None:
            missing.append(" or ".join(_alternatives(entry)))
        else:
            resolved[_alternatives(entry)[0]] = key
    if missing:
        raise DatasetError(
            f"{path}: missing key(s) {missing}; keys found: {sorted(found) or 'none'}; "
            f"keys expected: {_describe_expected(expected_keys)}")
    return resolved


def is_hdf5(path):
    """Whether `path` is an HDF5 file (MATLAB v7.3); False for v4-v7 files."""
    try:
        return h5py.is_hdf5(path)
    except OSError as error:
        raise DatasetError(f"{path}: cannot read: {error}") from error


def mat_keys(path):
    """The variable names stored in a .mat file (any version), without loading the data."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: file not found")
    if is_hdf5(path):
        with _reading(path, _HDF5), h5py.File(path, "r") as handle:
            return [name for name in handle if not name.startswith(_HDF5_INTERNAL_PREFIX)]
    with _reading(path, _V5):
        return [name for name, _, _ in scipy.io.whosmat(path)]


@contextlib.contextmanager
def _reading(path, what):
    """Turns any error of a file parser into one DatasetError that names the file.

    scipy and h5py raise a zoo of exception types on a corrupt or foreign file (ValueError,
    TypeError, MatReadError, zlib.error, struct.error, KeyError, RuntimeError, OSError, ...).
    MemoryError is a resource problem, not bad data, and DatasetError already names the file:
    both pass through.
    """
    try:
        yield
    except (DatasetError, MemoryError):
        raise
    except Exception as error:
        raise DatasetError(f"{path}: not a readable {what} "
                           f"({type(error).__name__}: {error})") from error


def _hdf5_sparse(group, key, path):
    """A MATLAB v7.3 sparse matrix (group with data / ir / jc) as a dense MATLAB-shaped array."""
    num_rows = int(group.attrs["MATLAB_sparse"])
    column_pointers = np.asarray(group["jc"][()], dtype=np.int64)
    row_index = np.asarray(group["ir"][()], dtype=np.int64) if "ir" in group else np.zeros(0)
    data = np.asarray(group["data"][()]) if "data" in group else np.zeros(0)
    shape = (num_rows, len(column_pointers) - 1)
    try:
        matrix = scipy.sparse.csc_matrix((data, row_index, column_pointers), shape=shape)
    except ValueError as error:
        raise DatasetError(f"{path}: sparse matrix {key!r} is malformed ({error})") from error
    return matrix.toarray()


def _hdf5_array(handle, key, path):
    """One v7.3 variable as a NumPy array in MATLAB's axis order (HDF5 axes reversed)."""
    node = handle[key]
    if isinstance(node, h5py.Group):
        if "MATLAB_sparse" in node.attrs:
            return _hdf5_sparse(node, key, path)
        raise DatasetError(f"{path}: key {key!r} is a MATLAB struct/object, not a numeric array")
    if node.attrs.get("MATLAB_empty", 0):
        return np.zeros((0,))
    matlab_class = node.attrs.get("MATLAB_class", b"")
    matlab_class = matlab_class.decode() if isinstance(matlab_class, bytes) else str(matlab_class)
    if matlab_class == "char" or node.dtype.kind not in "biuf":
        # object references (cell arrays), compound types, strings: not a numeric matrix
        raise DatasetError(f"{path}: key {key!r} is not a numeric array (MATLAB class "
                           f"{matlab_class or 'unknown'}, HDF5 type {node.dtype})")
    # h5py reads MATLAB's column-major (a, b, c) array as (c, b, a): .T restores (a, b, c)
    # as a view, without copying.
    return np.asarray(node[()]).T


def _load_hdf5(path, expected_keys):
    with _reading(path, _HDF5), h5py.File(path, "r") as handle:
        found = [name for name in handle if not name.startswith(_HDF5_INTERNAL_PREFIX)]
        resolved = resolve_keys(path, found, expected_keys)
        return {canonical: _hdf5_array(handle, key, path) for canonical, key in resolved.items()}


def _v5_array(value, key, path):
    if scipy.sparse.issparse(value):
        return value.toarray()
    value = np.asarray(value)
    if value.dtype.kind not in "biuf":
        raise DatasetError(f"{path}: key {key!r} is not a numeric array (MATLAB type "
                           f"{value.dtype}; a cell, struct or string?)")
    return value


def _load_v5(path, expected_keys):
    with _reading(path, _V5):
        found = [name for name, _, _ in scipy.io.whosmat(path)]
        resolved = resolve_keys(path, found, expected_keys)
        # variable_names: read only what is asked for; a 20,000-image file may hold much more.
        contents = scipy.io.loadmat(path, variable_names=list(resolved.values()))
    return {canonical: _v5_array(contents[key], key, path)
            for canonical, key in resolved.items()}


def load_mat(path, expected_keys):
    """Reads the named variables of a MATLAB .mat file, v4 to v7.3, without unpickling anything.

    v4-v7 files go through `scipy.io.loadmat`, v7.3 (HDF5) files through h5py. MATLAB v7.3
    stores arrays transposed (column-major data in a row-major format), so HDF5 arrays come back
    with their axes reversed: both versions give MATLAB's own shape (e.g. LAll 20015x24).
    Sparse matrices are returned dense.

    Args:
        path: the .mat file.
        expected_keys: entries, each a key name or a tuple of alternative names (the first is the
            canonical one). Names match exactly first, then case-insensitively.

    Returns:
        {canonical name: np.ndarray} for every entry, in MATLAB's axis order.

    Raises:
        DatasetError naming the file: not found, unreadable, a key missing (listing the keys
        found and the keys expected), or a key that holds no numeric array.
    """
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: file not found")
    if is_hdf5(path):
        return _load_hdf5(path, expected_keys)
    return _load_v5(path, expected_keys)
