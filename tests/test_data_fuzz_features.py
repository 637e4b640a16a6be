"""Fuzzed feature files for the .mat readers: a clear DatasetError or a correct load, never
another exception from deep inside NumPy, SciPy or h5py."""

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daah_tf.data.base import DatasetError
from daah_tf.data.mirflickr import load_mirflickr25k
from daah_tf.data.wiki import load_wiki

WIKI_KEYS = ["I_tr", "I_te", "T_tr", "T_te", "L_train", "L_test", "L_tr", "L_te", "junk"]
SETTINGS = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def arrays(draw):
    rows = draw(st.integers(0, 6))
    cols = draw(st.integers(0, 12))
    kind = draw(st.sampled_from(["float", "int", "nan", "inf", "onehot", "ids", "1d", "3d"]))
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    if kind == "float":
        return rng.normal(size=(rows, cols))
    if kind == "int":
        return rng.integers(-3, 4, size=(rows, cols)).astype(np.uint8)
    if kind == "nan":
        value = rng.normal(size=(max(rows, 1), max(cols, 1)))
        value[0, 0] = np.nan
        return value
    if kind == "inf":
        value = rng.normal(size=(max(rows, 1), max(cols, 1)))
        value[-1, -1] = np.inf
        return value
    if kind == "onehot":
        return np.eye(max(cols, 1), dtype=np.uint8)[rng.integers(0, max(cols, 1), rows)]
    if kind == "ids":
        return rng.integers(0, 12, size=(rows, 1)).astype(np.uint8)
    if kind == "1d":
        return rng.normal(size=rows)
    return rng.normal(size=(2, 2, 2))


@st.composite
def mat_contents(draw, keys):
    chosen = draw(st.lists(st.sampled_from(keys), min_size=0, max_size=len(keys), unique=True))
    return {key: arrays(draw) for key in chosen}


def check_loaded(dataset):
    n = len(dataset)
    assert dataset.labels.shape[0] == n and len(dataset.texts) == n and len(dataset.images) == n
    assert np.all(np.isfinite(np.asarray(dataset.texts, dtype=np.float64)))
    assert set(np.unique(dataset.labels)) <= {0.0, 1.0}
    for index in dataset.splits.values():
        assert np.all((index >= 0) & (index < n))


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


@given(contents=mat_contents(["images", "YAll", "LAll", "IAll", "FAll", "other"]))
@SETTINGS
def test_fuzzed_flickr_mat_loads_or_raises_dataset_error(tmp_path, contents):
    scipy.io.savemat(tmp_path / "FLICKR-25K.mat", contents)
    try:
        with _no_warning_check():
            dataset = load_mirflickr25k(str(tmp_path), seed=0, layout="single")
    except DatasetError as error:
        assert "FLICKR-25K.mat" in str(error) or str(tmp_path) in str(error)
        return
    check_loaded(dataset)


def test_empty_flickr_mat_named_in_the_error(tmp_path):
    # Found by the fuzz test above: zero rows used to give an error without the file's name.
    empty = np.zeros((0, 0))
    scipy.io.savemat(tmp_path / "FLICKR-25K.mat", {"images": empty, "YAll": empty, "LAll": empty})
    with pytest.raises(DatasetError, match="FLICKR-25K.mat"):
        load_mirflickr25k(str(tmp_path), seed=0, layout="single")


def test_garbage_bytes_named_in_the_error(tmp_path):
    (tmp_path / "wiki.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(range(256)) * 3)
    with pytest.raises(DatasetError, match="wiki.mat"):
        load_wiki(str(tmp_path))


class _no_warning_check:
    """Row-count warnings from the .mat layouts are expected here; they are not errors."""

    def __enter__(self):
        import warnings

        self._catcher = warnings.catch_warnings()
        self._catcher.__enter__()
        warnings.simplefilter("ignore", UserWarning)

    def __exit__(self, *exc):
        return self._catcher.__exit__(*exc)
