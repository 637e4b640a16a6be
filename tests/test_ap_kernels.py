"""The compiled AP kernels (extra ``fast``) against the NumPy path and brute force.

"Identical" here means bitwise: np.array_equal, not a tolerance. The kernels compile once per
machine (numba's cache), so these tests stay few and small.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_metrics import (  # tests/ is on sys.path (no package)
    brute_ap_index,
    brute_hamming,
    brute_relevance,
    dense_reference_ap,
    random_case,
)

from daah_tf import ap_kernels, metrics, query_chunks

needs_numba = pytest.mark.skipif(
    not ap_kernels.available(), reason=f"numba unavailable: {ap_kernels.unavailable_reason()}"
)


def both_backends(*args, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    compiled = metrics.average_precision_per_query(*args, backend="numba", **kwargs)
    numpy = metrics.average_precision_per_query(*args, backend="numpy", **kwargs)
    return compiled, numpy


@needs_numba
@pytest.mark.parametrize("bits", [2, 64, 300])  # heavy ties; one word; five words, uint16
@pytest.mark.parametrize("tie_rule", ["index", "average"])
def test_compiled_equals_numpy_bitwise(bits, tie_rule):
    rng = np.random.default_rng(bits)
    q, d, ql, dl = random_case(rng, 29, 900, bits, 70, p_label=0.03)  # 70 labels: 2 words
    for top_k in (None, 1, 17, 899, 5000):
        for chunk, threads in ((None, None), (4, 3)):
            compiled, numpy = both_backends(q, d, ql, dl, top_k, tie_rule, chunk_size=chunk,
                                            num_threads=threads)
            assert np.array_equal(compiled, numpy), (top_k, chunk, threads)
    # and the public mean, packed input included
    packed = metrics.pack_codes(q), metrics.pack_codes(d)
    assert metrics.mean_average_precision(*packed, ql, dl, packed=True, tie_rule=tie_rule,
                                          backend="numba") == metrics.mean_average_precision(
        q, d, ql, dl, tie_rule=tie_rule, backend="numpy")


@needs_numba
@pytest.mark.parametrize("top_k", [None, 1, 5, 40])
def test_compiled_index_rule_matches_brute_force(top_k):
    rng = np.random.default_rng(11 + (top_k or 0))
    q, d, ql, dl = random_case(rng, 7, 40, 3, 4)  # 3 bits: most items tie
    dist, rel = brute_hamming(q, d), brute_relevance(ql, dl)
    expected = [brute_ap_index(dist[i], rel[i], top_k) for i in range(len(q))]
    got = metrics.average_precision_per_query(q, d, ql, dl, top_k, backend="numba")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
    k = min(top_k or 40, 40)
    np.testing.assert_allclose(got, dense_reference_ap(dist, rel, k), rtol=0, atol=1e-15)


@needs_numba
def test_compiled_edge_rows_and_radius_metrics():
    # no relevant item; all relevant; everything tied; relevant only beyond the cut-off
    q = np.array([[1, 1], [1, -1], [-1, -1]], dtype=np.int8)
    d = np.array([[1, 1], [1, 1], [-1, 1], [-1, -1]], dtype=np.int8)
    ql = np.array([[0, 0], [1, 0], [0, 1]], dtype=bool)
    dl = np.array([[1, 0], [1, 0], [1, 1], [0, 1]], dtype=bool)
    for top_k in (None, 1, 2):
        compiled, numpy = both_backends(q, d, ql, dl, top_k)
        assert np.array_equal(compiled, numpy)
    assert both_backends(q, d, ql, dl)[0][0] == 0.0
    rng = np.random.default_rng(5)
    case = random_case(rng, 13, 300, 12, 6)
    prep = query_chunks.prepare(*case, packed=False)
    compiled = prep.histograms(0, 13, 13, compiled=True)
    numpy = prep.histograms(0, 13, 13, compiled=False)
    assert all(np.array_equal(a, b) for a, b in zip(compiled, numpy, strict=True))


@needs_numba
def test_ordered_sum_is_the_same_in_both_implementations():
    from daah_tf import _ap_numba

    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 8, 9, 16, 1001):
        terms = rng.random(n) / rng.integers(1, 10**6, n)
        assert ap_kernels.ordered_sum(terms) == _ap_numba._ordered_sum(terms, n)
    assert _ap_numba._ordered_sum(np.zeros(0), 0) == 0.0


def test_backend_choice(monkeypatch):
    rng = np.random.default_rng(1)
    case = random_case(rng, 5, 30, 8, 3)
    want = metrics.average_precision_per_query(*case, backend="numpy")
    with pytest.raises(ValueError, match="backend"):
        metrics.average_precision_per_query(*case, backend="fortran")
    monkeypatch.setattr(ap_kernels, "_KERNELS", None)
    monkeypatch.setattr(ap_kernels, "_IMPORT_ERROR", "ImportError: No module named 'numba'")
    assert not ap_kernels.available()
    with pytest.raises(ImportError, match=r"\.\[fast\]"):
        metrics.average_precision_per_query(*case, backend="numba")
    assert np.array_equal(metrics.average_precision_per_query(*case), want)  # auto: NumPy
