"""Tests for daah_tf.index.HammingIndex."""

from __future__ import annotations

import sys
import zipfile

import numpy as np
import pytest

from daah_tf.index import HammingIndex
from daah_tf.metrics import hamming_distance, pack_codes

try:
    import faiss  # noqa: F401

    HAVE_FAISS = True
except ImportError:
    HAVE_FAISS = False

needs_faiss = pytest.mark.skipif(not HAVE_FAISS, reason="faiss is not installed (faiss-cpu)")


def random_packed(rng, n, bits):
    return pack_codes(rng.choice([-1, 1], size=(n, bits)))


def brute_search(query, codes, ids, k):
    """Sort every query's row by (distance, insertion position), plainly."""
    dist = hamming_distance(query, codes)
    out_ids, out_dist = [], []
    for row in dist:
        order = sorted(range(len(row)), key=lambda j: (row[j], j))[:k]
        out_ids.append(ids[order])
        out_dist.append(row[order])
    return np.array(out_ids), np.array(out_dist)


@pytest.mark.parametrize("bits", [5, 8, 64, 72])
@pytest.mark.parametrize("k", [1, 7, 300])
def test_numpy_backend_matches_brute_force(bits, k):
    rng = np.random.default_rng(bits + k)
    codes, query = random_packed(rng, 300, bits), random_packed(rng, 9, bits)
    ids = rng.permutation(10_000)[:300].astype(np.int64)
    index = HammingIndex(bits, backend="numpy")
    index.add(codes[:100], ids[:100])
    index.add(codes[100:], ids[100:])
    got_ids, got_dist = index.search(query, k)
    want_ids, want_dist = brute_search(query, codes, ids, k)
    assert got_ids.dtype == np.int64 and got_dist.dtype == np.int32
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_array_equal(got_dist, want_dist)


@needs_faiss
@pytest.mark.parametrize("bits", [6, 8, 16, 64, 128])
@pytest.mark.parametrize("k", [1, 10, 999, 2000])
def test_faiss_and_numpy_identical_with_heavy_ties(bits, k):
    # Few bits make huge tied groups: the tie order (insertion position) must agree too.
    rng = np.random.default_rng(bits * 7 + k)
    codes, query = random_packed(rng, 2000, bits), random_packed(rng, 25, bits)
    ids = rng.permutation(2000).astype(np.int64) * 3
    results = []
    for backend in ("numpy", "faiss"):
        index = HammingIndex(bits, backend=backend)
        index.add(codes[:1500], ids[:1500])
        index.add(codes[1500:], ids[1500:])
        assert index.backend == backend
        results.append(index.search(query, k))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_auto_backend_follows_faiss_availability(monkeypatch):
    assert HammingIndex(8).backend == ("faiss" if HAVE_FAISS else "numpy")
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` fail
    assert HammingIndex(8).backend == "numpy"
    with pytest.raises(ImportError, match="faiss"):
        HammingIndex(8, backend="faiss")


@pytest.mark.parametrize("backend", ["numpy", pytest.param("faiss", marks=needs_faiss)])
def test_save_load_round_trip(tmp_path, backend):
    rng = np.random.default_rng(0)
    codes, query = random_packed(rng, 50, 20), random_packed(rng, 4, 20)
    index = HammingIndex(20, backend=backend)
    index.add(codes, np.arange(50, dtype=np.int64) * 10 + 1)
    path = tmp_path / "index.npz"
    index.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.npz"]  # no temp file left
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["bits.npy", "codes.npy", "format_version.npy", "ids.npy"]
    loaded = HammingIndex.load(path, backend="numpy")
    assert loaded.bits == 20 and len(loaded) == 50
    for a, b in zip(index.search(query, 12), loaded.search(query, 12), strict=True):
        np.testing.assert_array_equal(a, b)
    index.save(path)  # overwriting an existing file works
    empty = HammingIndex(20, backend=backend)
    empty.save(tmp_path / "empty.npz")
    assert len(HammingIndex.load(tmp_path / "empty.npz")) == 0


def test_load_rejects_foreign_file(tmp_path):
    np.savez(tmp_path / "other.npz", codes=np.zeros((1, 1), np.uint8))
    with pytest.raises(ValueError, match="missing"):
        HammingIndex.load(tmp_path / "other.npz")


@pytest.mark.parametrize("backend", ["numpy", pytest.param("faiss", marks=needs_faiss)])
def test_k_larger_than_index(backend):
    rng = np.random.default_rng(1)
    index = HammingIndex(16, backend=backend)
    index.add(random_packed(rng, 5, 16))
    ids, dist = index.search(random_packed(rng, 3, 16), k=50)
    assert ids.shape == dist.shape == (3, 5)
    assert sorted(ids[0].tolist()) == [0, 1, 2, 3, 4]
    assert np.all(np.diff(dist, axis=1) >= 0)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("faiss", marks=needs_faiss)])
def test_empty_index_and_bad_arguments(backend):
    index = HammingIndex(16, backend=backend)
    query = np.zeros((2, 2), np.uint8)
    with pytest.raises(ValueError, match="empty"):
        index.search(query, 3)
    with pytest.raises(ValueError, match="packed_codes has shape"):
        index.add(np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        index.add(np.zeros((2, 2), np.int8))
    index.add(np.zeros((2, 2), np.uint8), np.array([4, 5]))
    with pytest.raises(ValueError, match="query_packed has shape"):
        index.search(np.zeros((2, 1), np.uint8), 3)
    with pytest.raises(ValueError, match="k must"):
        index.search(query, 0)
    with pytest.raises(ValueError, match="unique"):
        index.add(np.zeros((1, 2), np.uint8), np.array([5]))
    with pytest.raises(ValueError, match="ids must be an integer array"):
        index.add(np.zeros((2, 2), np.uint8), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="padding"):
        HammingIndex(12, backend=backend).add(np.array([[0, 1]], np.uint8))
    with pytest.raises(ValueError, match="bits"):
        HammingIndex(0)
    with pytest.raises(ValueError, match="backend"):
        HammingIndex(8, backend="annoy")
