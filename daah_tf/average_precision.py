"""Average precision of distance rows, in NumPy: the ranking machinery of ``daah_tf.metrics``.

Inputs are blocks of one query chunk: non-negative integer distances (n, N), small unsigned ints,
with bool relevance (n, N), or the per-distance histograms of such a block. Conventions (AP@K,
``tie_rule="index"`` and ``"average"``) are those of the ``daah_tf.metrics`` docstring:

* ``tie_index``: ties by database index, one counting pass per query row, the same per-rank terms
  and summation order as the compiled kernels of ``daah_tf.ap_kernels`` (the same bits);
* ``tie_average``: the tie-aware AP of McSherry & Najork (ECIR 2008) in closed form from the
  ``histograms`` of a block (``from_histograms``, which the compiled path feeds with its own
  histograms), with harmonic-number differences accurate relative to the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from daah_tf import ap_kernels

_EULER_GAMMA = 0.57721566490153286
_HARMONIC_TABLE_SIZE = 64
_HARMONIC_TABLE = np.array(
    [math.fsum(1.0 / j for j in range(1, n + 1)) for n in range(_HARMONIC_TABLE_SIZE)]
)


def check_top_k(top_k: int | None, n_db: int) -> int:
    """top_k None -> N; ints >= 1 are clipped to N (AP@K for K >= N is AP@all)."""
    if top_k is None:
        return n_db
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
        raise ValueError(f"top_k must be None or a positive int, got {top_k!r}")
    return min(int(top_k), n_db)


def kernel(tie_rule: str, k: int, n_bins: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """AP@k per query row of a (dist, rel) block under ``tie_rule``; distances < n_bins."""
    if tie_rule == "index":
        return lambda dist, rel: tie_index(dist, rel, k)
    if tie_rule == "average":
        return lambda dist, rel: tie_average(dist, rel, k, n_bins)
    raise ValueError(f"tie_rule must be 'index' or 'average', got {tie_rule!r}")


def tie_index(dist: np.ndarray, rel: np.ndarray, k: int) -> np.ndarray:
    """AP@k, ties by database index: (1 / R_k) sum_{relevant r <= k} P@r, 0 if R_k = 0. (n,).

    One counting pass per query: distances take only q + 1 values, so the stable argsort of an
    8- or 16-bit distance row is NumPy's radix sort, i.e. a counting sort (a histogram of the
    distances, then one scatter of the items into their bins in database order), O(N) with no
    comparison sort. With t_i the 0-based rank of the i-th relevant item (i = 1..R_k) in that
    order, P@(t_i + 1) = i / (t_i + 1), so only the R_k relevant ranks are touched after the
    pass (the dense cumsum over all N ranks that this replaces cost as much as the pass).
    The terms and their summation order are those of the compiled kernel (``ap_kernels``), so
    both paths give the same bits.
    """
    counting = _rank_table(dist.shape[1])
    out = np.zeros(dist.shape[0])
    for row in range(dist.shape[0]):
        order = np.argsort(dist[row], kind="stable")  # radix (counting) sort for small uints
        ranks = np.flatnonzero(rel[row][order[:k]])  # t_i, ascending
        if len(ranks):
            terms = counting[: len(ranks)] / counting[ranks]  # i / (t_i + 1)
            out[row] = ap_kernels.ordered_sum(terms) / len(ranks)
    return out


_RANK_TABLES: dict[int, np.ndarray] = {}


def _rank_table(n: int) -> np.ndarray:
    """t + 1 for t in 0..n-1, float64 (n,), cached for the last database size."""
    table = _RANK_TABLES.get(n)
    if table is None:
        table = np.arange(1, n + 1, dtype=np.float64)
        _RANK_TABLES.clear()  # one database size at a time: bounded memory
        _RANK_TABLES[n] = table
    return table


def tie_average(dist: np.ndarray, rel: np.ndarray, k: int, n_bins: int) -> np.ndarray:
    """Tie-aware AP@k (McSherry & Najork 2008), independent of database order. (n,).

    For a group of n_g items at equal distance holding r_g relevant ones, with t_g items and
    R_g relevant items ranked above it, a uniformly random order within the group puts a
    relevant item at group position o with probability r_g / n_g, and then the expected number
    of relevant items among the o - 1 before it is (o - 1)(r_g - 1)/(n_g - 1). Hence
        E[sum of P@r over relevant r <= k]
          = sum_g (r_g / n_g) sum_{o=1}^{m_g} (R_g + 1 + (o-1)(r_g-1)/(n_g-1)) / (t_g + o),
    with m_g = clip(k - t_g, 0, n_g) the group positions within the top k, and the inner sums
    are differences of harmonic numbers. AP = that expectation / E[R_k], E[R_k] =
    sum_g r_g m_g / n_g (0 if E[R_k] = 0). For mAP@all, and whenever no tied group straddles
    rank k, R_k is fixed and this is exactly the expected index-rule AP@k; when a group
    straddles k it is the ratio of the two expectations.
    """
    return from_histograms(*histograms(dist, rel, n_bins), k)


def from_histograms(counts: np.ndarray, rel_counts: np.ndarray, k: int) -> np.ndarray:
    """``tie_average`` from items and relevant items per distance, int64 (n, n_bins)."""
    before = np.cumsum(counts, axis=1) - counts
    rel_before = np.cumsum(rel_counts, axis=1) - rel_counts
    taken = np.clip(k - before, 0, counts)
    s0 = _harmonic_diff(before, before + taken)  # sum_{o=1..m} 1 / (t + o)
    s1 = taken - (before + 1) * s0  # sum_{o=1..m} (o - 1) / (t + o)
    zeros = np.zeros(counts.shape)
    frac = np.divide(rel_counts, counts, out=zeros.copy(), where=counts > 0)
    pair = np.divide(rel_counts - 1, counts - 1, out=zeros, where=counts > 1)
    expected_sum = (frac * ((rel_before + 1) * s0 + pair * s1)).sum(axis=1)
    expected_hits = (frac * taken).sum(axis=1)
    out = np.zeros(expected_sum.shape)
    return np.divide(expected_sum, expected_hits, out=out, where=expected_hits > 0)


def histograms(dist: np.ndarray, rel: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Items and relevant items per distance, int64 (n, n_bins) each; dist < n_bins."""
    n = dist.shape[0]
    key = dist.astype(np.intp) * 2 + rel  # one bincount for both histograms
    key += (np.arange(n, dtype=np.intp) * (2 * n_bins))[:, None]
    both = np.bincount(key.ravel(), minlength=2 * n_bins * n).reshape(n, n_bins, 2)
    return both.sum(axis=2), both[:, :, 1]


def _harmonic_diff(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """H_hi - H_lo for integer arrays 0 <= lo <= hi, accurate relative to the result.

    A cumulative table of H_n would lose ~1e-11 absolute, and the tie-aware AP multiplies the
    difference by lo + 1 (up to N), so large arguments use log1p and the asymptotic series.
    """
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.asarray(hi, dtype=np.int64)
    lo_big = np.maximum(lo, _HARMONIC_TABLE_SIZE).astype(np.float64)
    hi_big = np.maximum(hi, _HARMONIC_TABLE_SIZE).astype(np.float64)
    far = np.log1p((hi - lo) / lo_big) + (_harmonic_tail(hi_big) - _harmonic_tail(lo_big))
    near = _harmonic(hi) - _harmonic(lo)
    return np.where(lo >= _HARMONIC_TABLE_SIZE, far, near)


def _harmonic(n: np.ndarray) -> np.ndarray:
    """H_n for integer n >= 0: exact table below 64, ln n + gamma + series above."""
    big = np.maximum(n, _HARMONIC_TABLE_SIZE).astype(np.float64)
    series = np.log(big) + _EULER_GAMMA + _harmonic_tail(big)
    return np.where(n < _HARMONIC_TABLE_SIZE, _HARMONIC_TABLE[np.minimum(n, 63)], series)


def _harmonic_tail(n: np.ndarray) -> np.ndarray:
    """H_n - ln n - gamma for n >= 64 (series truncated after n^-8: error < 1e-20)."""
    x = 1.0 / (n * n)
    return 0.5 / n - x * (1 / 12 - x * (1 / 120 - x * (1 / 252 - x / 240)))

