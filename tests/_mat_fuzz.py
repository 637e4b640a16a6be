"""Random .mat contents for the readers' fuzz tests (hypothesis strategies) and the invariants
every loaded dataset must keep; shared by test_wiki and test_mirflickr."""

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

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
