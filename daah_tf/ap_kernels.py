"""Compiled average-precision kernels (optional, numba), and the summation order they share.

``daah_tf.metrics`` uses these kernels when numba can be imported (extra ``fast``) and falls
back to its NumPy path otherwise. Both paths give bitwise-identical numbers: the histograms are
integers, and for the index tie rule both compute the same per-rank terms ``i / (t + 1)``
(the i-th relevant item at 0-based rank t, one IEEE division) and add them up in the order of
``ordered_sum``, which both implement (NumPy here, numba in ``_ap_numba._ordered_sum``).

Why a compiled kernel: NumPy's fastest exact route to the index-rule ranks is a radix argsort
per query row, which writes an 8-byte index per database item and then gathers through it; at
2,100 x 193,734 pairs that pass alone takes about a second per core. The kernels below fuse
distance, relevance and the counting pass into one read of the database codes per query, with
O(N) scratch memory per thread and no (n, N) arrays at all:

* pass 1, over the N database items in index order: d = popcount(query ^ code), r = whether
  the labels share a bit; a per-distance counter packs (items << 0) + (relevant items << 32),
  and for a relevant item its distance and the counter's value before the update are stored,
  i.e. its position among all items and among relevant items inside its distance group;
* pass 2, over the R relevant items only: with C_d items and RC_d relevant items at smaller
  distances, the item's rank is t = C_d + position and its relevant index i = RC_d + position
  among relevant + 1, so its term i / (t + 1) goes to slot i - 1 (rank order); then the
  ``ordered_sum`` of the first R_k slots, R_k the relevant items with t < k.

Inputs are the uint64 words of ``daah_tf.query_chunks.Prepared``: query codes (n, W), database
codes transposed (W, N), query labels (n, WL), database labels transposed (WL, N).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MAX_ITEMS = (1 << 31) - 1  # the kernels pack two counts < 2**31 into one int64 (signed)
SUM_LANES = 8

_KERNELS: dict[str, Callable[..., None]] | None = None
_IMPORT_ERROR: str | None = None


def ordered_sum(terms: np.ndarray) -> float:
    """Sum of float64 terms (R,) in the shared order: 8 lanes (slot m goes to lane m % 8),
    each added sequentially, then the lanes as ((0+1)+(2+3))+((4+5)+(6+7)).

    Eight independent accumulators keep the compiled loop from waiting on one add chain, and
    the order is fixed so that the NumPy and compiled paths agree to the last bit. np.cumsum
    (an accumulate: sequential by definition) gives each lane's running sum over full rows of
    8; the last R % 8 terms are then added to the first lanes, as the compiled loop does.
    """
    n = len(terms)
    full = n - n % SUM_LANES
    if full:
        lanes = np.cumsum(terms[:full].reshape(-1, SUM_LANES), axis=0)[-1]
    else:
        lanes = np.zeros(SUM_LANES)
    lanes[: n - full] += terms[full:]
    return float(((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
                 + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7])))


def available() -> bool:
    """True when numba imports (the kernels compile on first call, then come from a cache)."""
    return _kernels() is not None


def unavailable_reason() -> str:
    """Why ``available()`` is False ('' when it is True)."""
    _kernels()
    return _IMPORT_ERROR or ""


def index_ap(
    query_words: np.ndarray,
    db_words: np.ndarray,
    query_labels: np.ndarray,
    db_labels: np.ndarray,
    k: int,
) -> np.ndarray:
    """Index-rule AP@k per query, float64 (n,); words as in the module docstring."""
    kernels = require()
    out = np.empty(query_words.shape[0])
    kernels["index_ap"](query_words, db_words, query_labels, db_labels, k, out)
    return out


def histograms(
    query_words: np.ndarray,
    db_words: np.ndarray,
    query_labels: np.ndarray,
    db_labels: np.ndarray,
    n_bins: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Items and relevant items per distance 0..n_bins-1, int64 (n, n_bins) each."""
    kernels = require()
    counts = np.empty((query_words.shape[0], n_bins), dtype=np.int64)
    rel_counts = np.empty_like(counts)
    kernels["histograms"](query_words, db_words, query_labels, db_labels, counts, rel_counts)
    return counts, rel_counts


def require() -> dict[str, Callable[..., None]]:
    """The compiled kernels; ImportError naming the extra when numba is missing."""
    kernels = _kernels()
    if kernels is None:
        raise ImportError(
            f"the compiled mAP kernels need numba ({_IMPORT_ERROR}); "
            'install the extra: pip install -e ".[fast]"'
        )
    return kernels


def _kernels() -> dict[str, Callable[..., None]] | None:
    """Import numba and wrap the kernels on first use: importing numba costs ~0.3 s, which
    ``import daah_tf.metrics`` should not pay when nobody evaluates."""
    global _KERNELS, _IMPORT_ERROR
    if _KERNELS is None and _IMPORT_ERROR is None:
        try:
            from daah_tf import _ap_numba

            _KERNELS = {"index_ap": _ap_numba.index_ap, "histograms": _ap_numba.histograms}
        except Exception as exc:  # ImportError, or a numba that does not fit this NumPy
            _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"
    return _KERNELS
