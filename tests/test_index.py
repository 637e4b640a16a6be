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


# ----------------------------------------------------------------------------------------------
# Growing a saved index; the approximate (IVF / HNSW) index


def test_grow_index_file_appends_and_keeps_the_exact_order(tmp_path):
    from daah_tf.index import grow_index_file

    rng = np.random.default_rng(5)
    codes, query = random_packed(rng, 400, 24), random_packed(rng, 6, 24)
    ids = rng.permutation(5000)[:400].astype(np.int64)
    path = tmp_path / "image.npz"
    first = HammingIndex(24, backend="numpy")
    first.add(codes[:250], ids[:250])
    first.save(path)
    grown = grow_index_file(path, codes[250:], ids[250:], backend="numpy")
    reloaded = HammingIndex.load(path, backend="numpy")
    assert len(grown) == len(reloaded) == 400
    want = brute_search(query, codes, ids, 30)
    for index in (grown, reloaded):
        got = index.search(query, 30)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    with pytest.raises(ValueError, match="unique"):
        grow_index_file(path, codes[:1], ids[:1], backend="numpy")
    assert len(HammingIndex.load(path, backend="numpy")) == 400  # a refused grow left it as is
    assert [p.name for p in tmp_path.iterdir()] == ["image.npz"]  # no temporary left behind


def test_grow_index_file_failure_leaves_the_old_file(tmp_path, monkeypatch):
    from daah_tf import index as index_module

    rng = np.random.default_rng(6)
    path = tmp_path / "text.npz"
    original = HammingIndex(16, backend="numpy")
    original.add(random_packed(rng, 50, 16))
    original.save(path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(index_module.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        index_module.grow_index_file(path, random_packed(rng, 5, 16),
                                     np.arange(100, 105), backend="numpy")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["text.npz"]


def clustered_packed(rng, n, n_centres=32, bits=64):
    """Codes near a few random centres (each bit flipped with probability 1/8)."""
    centres = rng.integers(0, 2**63, size=n_centres, dtype=np.int64).view(np.uint64)
    flips = (rng.integers(0, 2**63, size=(3, n), dtype=np.int64).view(np.uint64))
    words = centres[rng.integers(0, n_centres, n)] ^ (flips[0] & flips[1] & flips[2])
    return words.astype(">u8").view(np.uint8).reshape(n, 8)[:, : bits // 8].copy()


@needs_faiss
@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_index_recall_growth_and_round_trip(kind, tmp_path):
    from daah_tf.index import ApproximateHammingIndex

    rng = np.random.default_rng(7)
    codes, query = clustered_packed(rng, 6000), clustered_packed(rng, 40)
    ids = np.arange(10_000, 16_000, dtype=np.int64)
    exact = HammingIndex(64, backend="numpy")
    exact.add(codes, ids)
    approx = ApproximateHammingIndex(64, kind, nlist=64, nprobe=16)
    approx.train(codes[:3000])
    approx.add(codes[:4000], ids[:4000])
    approx.add(codes[4000:], ids[4000:])  # grows without retraining
    k = 20
    got_ids, got_dist = approx.search(query, k)
    want_ids, want_dist = exact.search(query, k)
    assert got_ids.shape == (40, k) and got_dist.dtype == np.int32
    assert np.all(np.diff(got_dist, axis=1) >= 0)
    # every returned distance is the true distance of the returned id
    true = hamming_distance(query, codes)[np.arange(40)[:, None], got_ids - 10_000]
    np.testing.assert_array_equal(got_dist, true)
    # tie-aware recall: hits at least as close as the exact k-th hit
    recall = (got_dist <= want_dist[:, -1:]).mean()
    assert recall >= 0.95, recall
    path = tmp_path / f"{kind}.npz"
    approx.save(path)
    loaded = ApproximateHammingIndex.load(path)
    assert len(loaded) == 6000 and loaded.kind == kind
    np.testing.assert_array_equal(loaded.search(query, k)[1], got_dist)


@needs_faiss
def test_approximate_index_errors():
    from daah_tf.index import ApproximateHammingIndex

    with pytest.raises(ValueError, match="kind"):
        ApproximateHammingIndex(64, "lsh")
    ivf = ApproximateHammingIndex(64, "ivf", nlist=100)
    with pytest.raises(ValueError, match="train the IVF"):
        ivf.add(np.zeros((3, 8), np.uint8))
    with pytest.raises(ValueError, match=">= 100 codes"):
        ivf.train(np.zeros((10, 8), np.uint8))
