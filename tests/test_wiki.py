"""Readers on the real data under <repo>/../shared/data (skipped when absent), the MIRFLICKR-25K
text layout on generated files, and the registry."""

# Fuzzed feature files for the .mat readers: a clear DatasetError or a correct load, never
# another exception from deep inside NumPy, SciPy or h5py.


import numpy as np
import pytest
import scipy.io
from _helpers import SHARED_DATA, require
from _mat_fuzz import SETTINGS, check_loaded, mat_contents
from hypothesis import given

from daah_tf.data.base import DatasetError
from daah_tf.data.wiki import load_wiki

WIKI_DIR = SHARED_DATA / "wiki"




def test_wiki_real():
    dataset = load_wiki(require(WIKI_DIR))
    assert len(dataset) == 2866
    assert dataset.image_kind == "features" and dataset.images.shape == (2866, 128)
    assert dataset.text_kind == "bow" and dataset.texts.shape == (2866, 10)
    assert dataset.images.dtype == dataset.texts.dtype == np.float32
    assert dataset.labels.shape == (2866, 10)
    np.testing.assert_array_equal(dataset.labels.sum(axis=1), 1.0)  # one-hot
    np.testing.assert_array_equal(dataset.splits["query"], np.arange(2173, 2866))
    np.testing.assert_array_equal(dataset.splits["database"], np.arange(2173))
    np.testing.assert_array_equal(dataset.splits["train"], np.arange(2173))
    assert dataset.label_names[0] == "art" and len(dataset.label_names) == 10


WIKI_KEYS = ["I_tr", "I_te", "T_tr", "T_te", "L_train", "L_test", "L_tr", "L_te", "junk"]




@given(contents=mat_contents(WIKI_KEYS))
@SETTINGS
def test_fuzzed_wiki_mat_loads_or_raises_dataset_error(tmp_path, contents):
    scipy.io.savemat(tmp_path / "wiki.mat", contents)
    try:
        dataset = load_wiki(str(tmp_path))
    except DatasetError as error:
        assert "wiki.mat" in str(error)
        return
    check_loaded(dataset)


def test_garbage_bytes_named_in_the_error(tmp_path):
    (tmp_path / "wiki.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(range(256)) * 3)
    with pytest.raises(DatasetError, match="wiki.mat"):
        load_wiki(str(tmp_path))
