"""Reading MATLAB .mat files safely, and the generic "IAll / YAll / LAll" paired layout.

The names the dataset readers use, gathered from the modules that hold them (import them from
here or from those):

1. `daah_tf.data.mat_reading`, the file format: `load_mat` reads MATLAB v4/v5/v7 files with
   `scipy.io.loadmat` and v7.3 files (HDF5) with h5py, neither ever unpickling anything, and
   gives every array in MATLAB's own axis order; `mat_keys`, `resolve_keys`, `is_hdf5`.

2. `daah_tf.data.mat_arrays`, shapes and values: `infer_num_rows`, `orient`, `to_nhwc`,
   `check_finite`, `check_binary`, `as_matrix`, `as_labels`, `as_images` and `as_features` turn
   what a file holds into (N, ...) arrays, with errors that name the file, the key and the shapes.

3. `daah_tf.data.protocols`, protocol sizes: `scaled_sizes`, `scaled_protocol_split`,
   `train_from_database`.

4. `daah_tf.data.mat_layouts`, `load_mat_layout`: the loader shared by MIRFLICKR-25K, NUS-WIDE
   and IAPR TC-12 (four files PREFIX-{iall|fall,lall,yall}.mat, one IAll/YAll/LAll file, or one
   file split into database and test parts), parameterised by a `MatLayout`.
"""

from daah_tf.data.mat_arrays import (
    as_features,
    as_images,
    as_labels,
    as_matrix,
    check_binary,
    check_finite,
    infer_num_rows,
    orient,
    to_nhwc,
)
from daah_tf.data.mat_layouts import (
    FEATURE_KEYS,
    IMAGE_KEYS,
    LABEL_KEYS,
    SPLIT_KEYS,
    TEXT_KEYS,
    MatLayout,
    find_file,
    load_mat_layout,
)
from daah_tf.data.mat_reading import is_hdf5, load_mat, mat_keys, resolve_keys
from daah_tf.data.protocols import scaled_protocol_split, scaled_sizes, train_from_database

__all__ = [
    "FEATURE_KEYS",
    "IMAGE_KEYS",
    "LABEL_KEYS",
    "SPLIT_KEYS",
    "TEXT_KEYS",
    "MatLayout",
    "as_features",
    "as_images",
    "as_labels",
    "as_matrix",
    "check_binary",
    "check_finite",
    "find_file",
    "infer_num_rows",
    "is_hdf5",
    "load_mat",
    "load_mat_layout",
    "mat_keys",
    "orient",
    "resolve_keys",
    "scaled_protocol_split",
    "scaled_sizes",
    "to_nhwc",
    "train_from_database",
]
