"""daah_tf.milvus_index against embedded Milvus Lite: the same hits as the faiss backend.

Skips where the milvus extra (pymilvus 2.5.x, milvus-lite 2.5.1) is not installed. Ties at
equal distance may be ordered differently by Milvus, so each query's hits are compared as
distance multisets, and each returned distance must be the true distance of its id.
"""

import warnings

import numpy as np
import pytest

from daah_tf.index import HammingIndex
from daah_tf.metrics import hamming_distance, pack_codes

with warnings.catch_warnings():  # milvus_lite imports pkg_resources (deprecated)
    warnings.simplefilter("ignore")
    pytest.importorskip("pymilvus", reason="the milvus extra (pymilvus) is not installed")
    pytest.importorskip("milvus_lite", reason="the milvus extra (milvus-lite) is not installed")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory):
    return str(tmp_path_factory.mktemp("milvus") / "codes.db")


@pytest.mark.parametrize("bits", [16, 64])
def test_milvus_equals_faiss_as_distance_multisets(milvus_uri, bits):
    from daah_tf.milvus_index import MilvusHammingIndex

    rng = np.random.default_rng(bits)
    codes = pack_codes(rng.choice([-1, 1], size=(3000, bits)))
    query = pack_codes(rng.choice([-1, 1], size=(12, bits)))
    ids = rng.permutation(100_000)[:3000].astype(np.int64)
    index = MilvusHammingIndex(bits, milvus_uri, collection=f"codes_{bits}")
    try:
        index.add(codes[:1000], ids[:1000])
        index.add(codes[1000:], ids[1000:])  # grows
        assert len(index) == 3000
        exact = HammingIndex(bits, backend="auto")
        exact.add(codes, ids)
        for k in (1, 10, 100):
            got_ids, got_dist = index.search(query, k)
            want_ids, want_dist = exact.search(query, k)
            assert got_ids.shape == want_ids.shape == (12, k)
            np.testing.assert_array_equal(np.sort(got_dist, axis=1), np.sort(want_dist, axis=1))
            position = {int(i): p for p, i in enumerate(ids)}
            true = hamming_distance(query, codes)
            for row in range(len(query)):
                columns = [position[int(i)] for i in got_ids[row]]
                np.testing.assert_array_equal(got_dist[row], true[row, columns])
    finally:
        index.drop()


def test_milvus_refuses_bad_input_and_other_widths(milvus_uri):
    from daah_tf.milvus_index import MilvusHammingIndex

    index = MilvusHammingIndex(16, milvus_uri, collection="widths")
    try:
        with pytest.raises(ValueError, match="unique"):
            index.add(np.zeros((2, 2), np.uint8), [5, 5])
        with pytest.raises(ValueError, match="2 bytes"):
            index.add(np.zeros((2, 3), np.uint8), [1, 2])
        with pytest.raises(ValueError, match="dim 16, not 64"):
            MilvusHammingIndex(64, milvus_uri, collection="widths")
    finally:
        index.drop()
