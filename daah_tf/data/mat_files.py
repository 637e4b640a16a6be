"""Reading MATLAB .mat files safely, and the generic "IAll / YAll / LAll" paired layout.

Two parts:

1. Low-level, file-format helpers: `load_mat` reads MATLAB v4/v5/v7 files with `scipy.io.loadmat`
   and v7.3 files (HDF5) with h5py; neither ever unpickles anything. `infer_num_rows`, `orient`,
   `to_nhwc` and `check_finite` turn what a file holds into (N, ...) arrays, with errors that name
   the file, the key and the shapes.

2. `load_mat_layout`: the loader shared by MIRFLICKR-25K, NUS-WIDE and IAPR TC-12, which the
   deep cross-modal hashing repositories (DCMH, SSAH, DJSRH, AGAH, ...) distribute in the same few
   shapes, parameterised by a `MatLayout` (file names, protocol sizes):

   - four files `PREFIX-iall.mat` (`IAll`, images), `PREFIX-fall.mat` (`FAll`, image features),
     `PREFIX-lall.mat` (`LAll`, labels) and `PREFIX-yall.mat` (`YAll`, text bag-of-words);
     `lall`, `yall` and one of `iall` / `fall` are needed;
   - one file holding images (`images` or `IAll`) or features (`FAll`), `YAll` and `LAll`;
   - one file already split into database and test parts (`VDatabase`, `YDatabase`,
     `databaseL`, `VTest`, `YTest`, `testL`, as in `iapr-tc12-rand.mat`).

   Key names match case-insensitively (`lall`, `LALL`, `LAll`), and file names too.

MATLAB v7.3 and axis order: MATLAB arrays are column-major, HDF5 datasets row-major, so a MATLAB
array of size (a, b, c) appears in h5py with shape (c, b, a). `load_mat` reverses the axes of
every HDF5 array (a transposing view, no copy), so both formats give MATLAB's own shape, e.g.
`LAll` 20015x24 and `IAll` 224x224x3x20015 either way. The other helpers then accept the
(N, d) / (d, N) and N-first / N-last orientations real files use.
"""

import contextlib
import dataclasses
import os
import warnings

import h5py
import numpy as np
import scipy.io
import scipy.sparse

from daah_tf.data.base import DatasetError, PairedDataset
from daah_tf.data.splits import random_protocol_split

# Rows per chunk when scanning large arrays, so a check never doubles a multi-GB array in memory.
_CHUNK_ROWS = 4096
# Variables MATLAB v7.3 files keep for their own bookkeeping, not user data.
_HDF5_INTERNAL_PREFIX = "#"
_HDF5, _V5 = "HDF5 / MATLAB v7.3 file", "MATLAB .mat file"

# Accepted key names per role, first = canonical. Matching is case-insensitive.
IMAGE_KEYS = ("IAll", "images", "imgs", "I_all")
FEATURE_KEYS = ("FAll", "XAll", "features", "F_all")
TEXT_KEYS = ("YAll", "TAll", "tags", "texts", "Y_all")
LABEL_KEYS = ("LAll", "labels", "L_all")
SPLIT_KEYS = {  # the pre-split layout of iapr-tc12-rand.mat and its relatives
    "db_images": ("VDatabase", "IDatabase", "XDatabase"),
    "db_texts": ("YDatabase", "TDatabase"),
    "db_labels": ("databaseL", "LDatabase"),
    "test_images": ("VTest", "ITest", "XTest"),
    "test_texts": ("YTest", "TTest"),
    "test_labels": ("testL", "LTest"),
}


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------

def _alternatives(entry):
    """An expected-key entry as a tuple of names: "LAll" or ("LAll", "labels")."""
    return (entry,) if isinstance(entry, str) else tuple(entry)


def _describe_expected(expected_keys):
    return ", ".join(" or ".join(_alternatives(entry)) for entry in expected_keys)


def _match_key(entry, found, path):
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
        key = _match_key(entry, found, path)
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


# --------------------------------------------------------------------------------------------
# Shapes and values
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Protocol sizes
# --------------------------------------------------------------------------------------------

def scaled_sizes(num_pairs, standard_pairs, num_query, num_train):
    """Query and train sizes of a protocol, scaled to N pairs.

    With N == `standard_pairs` the standard sizes are used exactly; otherwise both shrink or
    grow in proportion to N (rounded, at least 1 each, their sum at most N), so small test files
    and subsets keep the protocol's shape.

    Raises:
        DatasetError when N < 2 (no room for a query and a training pair).
    """
    if num_pairs == standard_pairs:
        return num_query, num_train
    if num_pairs < 2:
        raise DatasetError(f"{num_pairs} pairs: need at least 2 for a query and a training set")
    query = max(1, round(num_pairs * num_query / standard_pairs))
    query = min(query, num_pairs - 1)
    train = max(1, round(num_pairs * num_train / standard_pairs))
    return query, min(train, num_pairs - query)


def scaled_protocol_split(num_pairs, standard_pairs, num_query, num_train, seed):
    """`random_protocol_split` with `scaled_sizes`: {"query", "database", "train"} -> indices."""
    query, train = scaled_sizes(num_pairs, standard_pairs, num_query, num_train)
    return random_protocol_split(num_pairs, query, train, seed)


def train_from_database(database, num_train, seed):
    """`num_train` of the `database` indices, drawn reproducibly from `seed`, sorted int64."""
    picks = random_protocol_split(len(database), 0, num_train, seed)["train"]
    return np.asarray(database, dtype=np.int64)[picks]


# --------------------------------------------------------------------------------------------
# The IAll / YAll / LAll layouts
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MatLayout:
    """Where a dataset's .mat files are and what its protocol is.

    Attributes:
        name: the dataset's name, e.g. "mirflickr25k".
        prefixes: four-file layout names: PREFIX-iall.mat, PREFIX-fall.mat, PREFIX-lall.mat,
            PREFIX-yall.mat, tried in order.
        single_files: single-file names (IAll/YAll/LAll style or pre-split), tried in order.
        standard_pairs: N of the standard dataset.
        num_query: standard query-set size.
        num_train: standard training-set size (drawn from the database).
        text_dim: standard bag-of-words size (a warning otherwise).
        num_labels: standard label count (a warning otherwise).
        label_names: the standard label names, used when the file has `num_labels` labels.
        other_layouts: descriptions of layouts the dataset's own reader handles, for the
            "not found" message.
    """

    name: str
    prefixes: tuple
    single_files: tuple
    standard_pairs: int
    num_query: int
    num_train: int
    text_dim: int
    num_labels: int
    label_names: tuple | None = None
    other_layouts: tuple = ()


def find_file(data_dir, name):
    """data_dir/NAME, matching the file name case-insensitively; None when absent."""
    exact = os.path.join(data_dir, name)
    if os.path.isfile(exact):
        return exact
    if not os.path.isdir(data_dir):
        return None
    for entry in sorted(os.listdir(data_dir)):
        if entry.lower() == name.lower() and os.path.isfile(os.path.join(data_dir, entry)):
            return os.path.join(data_dir, entry)
    return None


def _four_files(data_dir, prefix):
    """{"iall", "fall", "lall", "yall"} -> path or None for one prefix."""
    return {part: find_file(data_dir, f"{prefix}-{part}.mat")
            for part in ("iall", "fall", "lall", "yall")}


def _pick_image_file(files, images):
    """The image file of a four-file set, by the `images` choice."""
    order = {"auto": ("iall", "fall"), "pixels": ("iall",), "features": ("fall",)}[images]
    for part in order:
        if files[part]:
            return part, files[part]
    return None, None


def _read_four_files(files, images):
    """(part, image array, image path), (texts, path), (labels, path) of a four-file set."""
    part, image_path = _pick_image_file(files, images)
    keys = IMAGE_KEYS if part == "iall" else FEATURE_KEYS
    image = load_mat(image_path, [keys])[keys[0]]
    texts = load_mat(files["yall"], [TEXT_KEYS])[TEXT_KEYS[0]]
    labels = load_mat(files["lall"], [LABEL_KEYS])[LABEL_KEYS[0]]
    return (part, image, image_path), (texts, files["yall"]), (labels, files["lall"])


def _read_single_file(path, images):
    """Same triple as `_read_four_files`, from one IAll/YAll/LAll-style file."""
    found = mat_keys(path)
    choices = {"auto": (IMAGE_KEYS, FEATURE_KEYS), "pixels": (IMAGE_KEYS,),
               "features": (FEATURE_KEYS,)}[images]
    image_keys = next((keys for keys in choices if _match_key(keys, found, path)), choices[0])
    arrays = load_mat(path, [image_keys, TEXT_KEYS, LABEL_KEYS])
    part = "iall" if image_keys is IMAGE_KEYS else "fall"
    return ((part, arrays[image_keys[0]], path), (arrays[TEXT_KEYS[0]], path),
            (arrays[LABEL_KEYS[0]], path))


def _image_input(part, array, num_rows, path):
    key = IMAGE_KEYS[0] if part == "iall" else FEATURE_KEYS[0]
    if part == "fall":
        return "features", as_features(array, num_rows, key, path)
    return as_images(array, num_rows, key, path)


def _assemble(layout, image_triple, text_pair, label_pair, seed, extras):
    """The PairedDataset of an all-in-one (not pre-split) layout, with the scaled protocol."""
    part, image, image_path = image_triple
    (texts, text_path), (labels, label_path) = text_pair, label_pair
    num_rows = infer_num_rows(
        {f"{label_path}:{LABEL_KEYS[0]}": labels, f"{text_path}:{TEXT_KEYS[0]}": texts,
         f"{image_path}:{part}": image}, preferred=layout.standard_pairs)
    labels = as_labels(labels, num_rows, LABEL_KEYS[0], label_path)
    texts = as_matrix(texts, num_rows, TEXT_KEYS[0], text_path)
    image_kind, images = _image_input(part, image, num_rows, image_path)
    try:
        splits = scaled_protocol_split(num_rows, layout.standard_pairs, layout.num_query,
                                       layout.num_train, seed)
    except DatasetError as error:
        raise DatasetError(f"{label_path}: {error}") from None  # name the file that is short
    return _dataset(layout, images, image_kind, texts, labels, splits, extras)


def _label_names(layout, num_labels):
    if layout.label_names is not None and len(layout.label_names) == num_labels:
        return list(layout.label_names)
    return [f"label{index:0{len(str(num_labels - 1))}d}" for index in range(num_labels)]


def _warn_if_not_standard(layout, num_rows, text_dim, num_labels):
    standard = (layout.standard_pairs, layout.text_dim, layout.num_labels)
    if (num_rows, text_dim, num_labels) != standard:
        warnings.warn(
            f"{layout.name}: {num_rows} pairs, {text_dim}-d text, {num_labels} labels; the "
            f"standard dataset has {standard[0]}, {standard[1]}-d, {standard[2]}: protocol "
            f"sizes are scaled to the row count", stacklevel=2)


def _dataset(layout, images, image_kind, texts, labels, splits, extras):
    _warn_if_not_standard(layout, len(labels), texts.shape[1], labels.shape[1])
    return PairedDataset(name=layout.name, images=images, image_kind=image_kind, texts=texts,
                         text_kind="bow", labels=labels,
                         label_names=_label_names(layout, labels.shape[1]), splits=splits,
                         extras=extras)


def _has_split_keys(found, path):
    return all(_match_key(keys, found, path) for keys in SPLIT_KEYS.values())


def _load_presplit(layout, path, seed):
    """A file already split into database and test parts; rows = [database; test].

    query = the test rows, database = the database rows, train = drawn from the database with
    `seed` (the standard size, scaled when the database is not the standard size).
    """
    arrays = load_mat(path, list(SPLIT_KEYS.values()))
    parts = {prefix: _presplit_part(arrays, prefix, path) for prefix in ("db", "test")}
    return _stack_presplit(layout, parts, path, seed)


def _presplit_part(arrays, prefix, path):
    """((image kind, images), texts, labels) of the "db" or "test" part of a pre-split file."""
    names = [SPLIT_KEYS[f"{prefix}_{kind}"][0] for kind in ("images", "texts", "labels")]
    image, texts, labels = (arrays[name] for name in names)
    num_rows = infer_num_rows({f"{path}:{names[2]}": labels, f"{path}:{names[1]}": texts,
                               f"{path}:{names[0]}": image})
    return (as_images(image, num_rows, names[0], path),
            as_matrix(texts, num_rows, names[1], path),
            as_labels(labels, num_rows, names[2], path))


def _presplit_train_size(layout, num_db):
    """The standard training-set size, scaled when the database is not the standard size."""
    standard_db = layout.standard_pairs - layout.num_query
    if num_db == standard_db:
        return layout.num_train
    return min(num_db, max(1, round(num_db * layout.num_train / standard_db)))


def _stack_presplit(layout, parts, path, seed):
    (db_kind, db_images), db_texts, db_labels = parts["db"]
    (test_kind, test_images), test_texts, test_labels = parts["test"]
    if db_kind != test_kind or db_images.shape[1:] != test_images.shape[1:]:
        raise DatasetError(f"{path}: database images {db_images.shape} and test images "
                           f"{test_images.shape} differ in kind or shape")
    for what, db, test in (("texts", db_texts, test_texts), ("labels", db_labels, test_labels)):
        if db.shape[1] != test.shape[1]:
            raise DatasetError(f"{path}: database and test {what} have {db.shape[1]} and "
                               f"{test.shape[1]} columns")
    num_db, num_test = len(db_labels), len(test_labels)
    database = np.arange(num_db, dtype=np.int64)
    splits = {"query": np.arange(num_db, num_db + num_test, dtype=np.int64),
              "database": database,
              "train": train_from_database(database, _presplit_train_size(layout, num_db),
                                           seed)}
    return _dataset(layout, np.concatenate([db_images, test_images]), db_kind,
                    np.concatenate([db_texts, test_texts]),
                    np.concatenate([db_labels, test_labels]), splits,
                    {"layout": "presplit"})


def _existing(data_dir, layout, kind):
    """(kind, detail) of the first layout present in data_dir, or (None, incomplete sets)."""
    incomplete = []
    for name in layout.single_files if kind in (None, "single") else ():
        path = find_file(data_dir, name)
        if path:
            return "single", path
    for prefix in layout.prefixes if kind in (None, "four") else ():
        files = _four_files(data_dir, prefix)
        if files["lall"] and files["yall"] and (files["iall"] or files["fall"]):
            return "four", files
        if any(files.values()):
            incomplete.append((prefix, files))
    return None, incomplete


def _not_found(data_dir, layout, incomplete):
    if incomplete:
        prefix, files = incomplete[0]
        missing = [f"{prefix}-{part}.mat" for part in ("lall", "yall") if not files[part]]
        if not (files["iall"] or files["fall"]):
            missing.append(f"{prefix}-iall.mat or {prefix}-fall.mat")
        return DatasetError(f"{data_dir}: incomplete {layout.name} four-file set, missing "
                            f"{missing}")
    present = sorted(os.listdir(data_dir))
    shown = present[:20] + (["..."] if len(present) > 20 else [])
    wanted = (list(layout.single_files)
              + [f"{p}-{{iall|fall,lall,yall}}.mat" for p in layout.prefixes]
              + list(layout.other_layouts))
    return DatasetError(f"{data_dir}: no {layout.name} data found; expected one of {wanted}; "
                        f"files found: {shown or 'none'}")


def load_mat_layout(data_dir, layout, seed, images="auto", kind=None):
    """Loads a dataset stored in one of the IAll/YAll/LAll-style .mat layouts.

    Args:
        data_dir: the folder holding the .mat files.
        layout: a `MatLayout`.
        seed: the protocol split's seed.
        images: "auto" (pixels when present, else features), "pixels" or "features".
        kind: None (detect: a single file first, then the four-file sets), "single" or "four".

    Returns:
        A PairedDataset: image_kind "pixels" (N, H, W, 3) uint8 or "features" (N, d) /
        (N, h, w, c) float32; text_kind "bow" (N, V) float32; labels (N, L) float32;
        extras["layout"] in "single", "four", "presplit".

    Raises:
        DatasetError naming the folder or file on missing files or keys, shapes that do not line
        up, NaN/Inf values or non-binary labels.
    """
    if images not in ("auto", "pixels", "features"):
        raise ValueError(f"images must be 'auto', 'pixels' or 'features', got {images!r}")
    if kind not in (None, "single", "four"):
        raise ValueError(f"kind must be None, 'single' or 'four', got {kind!r}")
    if not os.path.isdir(data_dir):
        raise DatasetError(f"{data_dir}: data folder not found")
    kind, detail = _existing(data_dir, layout, kind)
    if kind is None:
        raise _not_found(data_dir, layout, detail)
    if kind == "four":
        if _pick_image_file(detail, images)[0] is None:
            raise DatasetError(f"{data_dir}: no {images} file (iall = pixels, fall = features) "
                               f"among {[p for p in detail.values() if p]}")
        return _assemble(layout, *_read_four_files(detail, images), seed, {"layout": "four"})
    found = mat_keys(detail)
    if _has_split_keys(found, detail) and not _match_key(LABEL_KEYS, found, detail):
        return _load_presplit(layout, detail, seed)
    return _assemble(layout, *_read_single_file(detail, images), seed, {"layout": "single"})
