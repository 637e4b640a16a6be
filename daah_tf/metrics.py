"""Retrieval metrics for binary hash codes, in pure NumPy.

Conventions used throughout the module:

* Codes: an array of shape (n, bits) holding +-1 values in any integer, float or bool dtype. An
  entry > 0 is bit 1, anything else (-1, 0, NaN) is bit 0, which matches ``sign`` with 0 -> -1.
* Packed codes: ``pack_codes`` stores codes as uint8 of shape (n, ceil(bits / 8)) with
  ``np.packbits(..., bitorder="big")``: code dimension 0 is the most significant bit of byte 0,
  and the unused low bits of the last byte are 0. Functions taking codes accept packed codes with
  ``packed=True``; the padding bits must then be 0 (checked), so they never add to a distance.
* Distances: Hamming distances, integers in [0, bits].
* Relevance: a database item is relevant to a query when their multi-hot label rows (any dtype,
  nonzero = label present) share at least one label.
* Ranking, ``tie_rule="index"``: the database is sorted by distance, ties broken by database index
  (a stable sort), the rule of the DCMH/DAAH reference code and of published numbers. With R_K the
  number of relevant items among the top K and r the rank of a relevant item,
      AP@K = (1 / R_K) * sum_{relevant r <= K} precision@r,
  and AP@K = 0 when R_K = 0. This is the reference code's convention (it skips such queries but
  still divides by the number of queries); mAP@all is K = N.
* Ranking, ``tie_rule="average"``: the tie-aware AP of McSherry & Najork (ECIR 2008), the mean
  of the index-rule AP over all orders of the items inside each group of equal distance, computed
  in closed form from per-distance counts, so it does not depend on database order. See
  ``_ap_tie_average`` for the formula and for top_k cut-offs that split a tied group.

Everything is vectorised over queries: queries go in chunks of rows of about 260k query x
database pairs (~40 bytes per pair at peak, so ~10 MB per chunk whatever the database size), and
chunks run on a few threads (NumPy's sort, gather and ufunc loops release the GIL).

Backends: where numba imports (extra ``fast``), AP and the radius metrics use the compiled
kernels of ``daah_tf.ap_kernels`` (distance, relevance and the counting pass fused, O(N) scratch
per thread, no (n, N) arrays), with bitwise-identical results; ``backend="numpy"`` forces the
NumPy path, ``backend="numba"`` requires the compiled one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from daah_tf import ap_kernels

TieRule = Literal["index", "average"]
EmptyRule = Literal["exclude", "zero"]
Backend = Literal["auto", "numpy", "numba"]

# Query x database pairs per chunk (~40 bytes each at peak, ~10 MB per worker thread): small
# enough that NumPy reuses heap memory instead of page-faulting fresh mmap blocks each chunk.
_CHUNK_PAIRS = 1 << 18
_MAX_THREADS = 4
# Compiled path: query chunks per thread. Its chunks need no (n, N) memory, so they are sized
# for load balance only (threads that finish early take the next chunk).
_COMPILED_CHUNKS_PER_THREAD = 8
_EULER_GAMMA = 0.57721566490153286
_HARMONIC_TABLE_SIZE = 64
_HARMONIC_TABLE = np.array(
    [math.fsum(1.0 / j for j in range(1, n + 1)) for n in range(_HARMONIC_TABLE_SIZE)]
)


# ----------------------------------------------------------------------------------------------
# Packing and distances


def pack_codes(codes: ArrayLike) -> np.ndarray:
    """Pack +-1 codes (n, bits) into uint8 (n, ceil(bits / 8)), big bit order, zero padding."""
    codes = _as_2d(codes, "codes")
    if codes.shape[1] == 0:
        raise ValueError(f"codes must have at least one bit, got shape {codes.shape}")
    return np.packbits(codes > 0, axis=1, bitorder="big")


def unpack_codes(packed: ArrayLike, bits: int) -> np.ndarray:
    """Unpack uint8 (n, ceil(bits / 8)) codes into int8 +-1 codes (n, bits)."""
    packed = as_packed_codes(packed, bits, "packed")
    return np.unpackbits(packed, axis=1, count=bits, bitorder="big").astype(np.int8) * 2 - 1


def as_packed_codes(packed: ArrayLike, bits: int | None = None, name: str = "packed") -> np.ndarray:
    """Check packed codes: uint8 (n, ceil(bits / 8)) with zero padding bits; C-contiguous copy."""
    packed = _as_2d(packed, name)
    if packed.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 packed codes, got dtype {packed.dtype}")
    if bits is None:
        return np.ascontiguousarray(packed)
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or bits < 1:
        raise ValueError(f"bits must be a positive int, got {bits!r}")
    if packed.shape[1] != -(-bits // 8):
        raise ValueError(
            f"{name} has shape {packed.shape}, but {bits} bits pack into {-(-bits // 8)} bytes"
        )
    if bits % 8 and packed.shape[0] and np.any(packed[:, -1] & ((1 << (8 - bits % 8)) - 1)):
        raise ValueError(f"{name} has nonzero padding bits beyond bit {bits}")
    return np.ascontiguousarray(packed)


def hamming_distance(
    query_packed: ArrayLike,
    db_packed: ArrayLike,
    chunk_size: int | None = None,
    dtype: DTypeLike = np.int32,
) -> np.ndarray:
    """Hamming distances (Q, N) of dtype ``dtype`` between packed codes (Q, B) and (N, B) uint8.

    Computed ``chunk_size`` query rows at a time (default: about 260k pairs per chunk).
    """
    query = as_packed_codes(query_packed, name="query_packed")
    db = as_packed_codes(db_packed, name="db_packed")
    _check_same_width(query, db, "query_packed", "db_packed")
    query_words, db_words = _to_words(query), _to_words(db).T.copy()
    out = np.empty((query.shape[0], db.shape[0]), dtype=dtype)
    rows = _chunk_rows(db.shape[0], chunk_size)
    for start in range(0, query.shape[0], rows):
        out[start : start + rows] = _distance_block(query_words[start : start + rows], db_words)
    return out


def _to_words(packed: np.ndarray) -> np.ndarray:
    """(n, B) uint8 -> (n, ceil(B / 8)) uint64; zero bytes pad the width (they add no distance)."""
    n, width = packed.shape
    padded = np.zeros((n, -(-width // 8) * 8), dtype=np.uint8)
    padded[:, :width] = packed
    return padded.view(np.uint64)


def _distance_block(query_words: np.ndarray, db_words_t: np.ndarray) -> np.ndarray:
    """(n, W) uint64 queries x (W, N) uint64 database -> (n, N) smallest unsigned distances.

    Small dtypes matter: NumPy's stable argsort is a one-pass radix sort for 8-bit keys.
    """
    n_words = db_words_t.shape[0]
    dtype = _small_uint(64 * n_words)
    buf = np.empty((query_words.shape[0], db_words_t.shape[1]), dtype=np.uint64)
    dist = None
    for w in range(n_words):
        np.bitwise_xor(query_words[:, w, None], db_words_t[w], out=buf)
        count = np.bitwise_count(buf)
        dist = count.astype(dtype, copy=False) if dist is None else np.add(dist, count, out=dist)
    return dist


def _small_uint(max_value: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


# ----------------------------------------------------------------------------------------------
# Relevance


def relevance(query_labels: ArrayLike, db_labels: ArrayLike) -> np.ndarray:
    """bool (Q, N): query i and database item j share at least one label ((Q, L), (N, L))."""
    query, db = _label_words(query_labels, db_labels)
    return _relevance_block(query, db)


def _label_words(query_labels: ArrayLike, db_labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Multi-hot (Q, L), (N, L) -> bit-packed uint64 (Q, W) and transposed (W, N)."""
    query = _as_2d(query_labels, "query_labels")
    db = _as_2d(db_labels, "db_labels")
    if query.shape[1] != db.shape[1]:
        raise ValueError(
            f"query_labels {query.shape} and db_labels {db.shape} have different label counts"
        )
    return _to_words(np.packbits(query != 0, axis=1)), _to_words(np.packbits(db != 0, axis=1)).T


def _relevance_block(query_words: np.ndarray, db_words_t: np.ndarray) -> np.ndarray:
    """(n, W) x (W, N) uint64 label bits -> bool (n, N), one AND per 64 labels."""
    buf = np.empty((query_words.shape[0], db_words_t.shape[1]), dtype=np.uint64)
    rel = np.zeros(buf.shape, dtype=bool)
    for w in range(db_words_t.shape[0]):
        np.bitwise_and(query_words[:, w, None], db_words_t[w], out=buf)
        if w == 0:
            np.not_equal(buf, 0, out=rel)
        else:
            rel |= buf != 0
    return rel


# ----------------------------------------------------------------------------------------------
# Public metrics on codes


class _Prepared(NamedTuple):
    query_words: np.ndarray  # (Q, W) uint64 code bits
    db_words: np.ndarray  # (W, N) uint64 code bits
    query_labels: np.ndarray  # (Q, WL) uint64 label bits
    db_labels: np.ndarray  # (WL, N) uint64 label bits
    bits: int

    def block(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Distances (n, N) small uint and relevance (n, N) bool of queries start:stop."""
        dist = _distance_block(self.query_words[start:stop], self.db_words)
        return dist, _relevance_block(self.query_labels[start:stop], self.db_labels)

    def words(self, start: int, stop: int) -> tuple[np.ndarray, ...]:
        """The arguments of the ``ap_kernels`` functions for queries start:stop."""
        return (self.query_words[start:stop], self.db_words, self.query_labels[start:stop],
                self.db_labels)

    def histograms(
        self, start: int, stop: int, n_bins: int, compiled: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Items and relevant items per distance of queries start:stop, int64 (n, n_bins)."""
        if compiled:
            return ap_kernels.histograms(*self.words(start, stop), n_bins)
        return _histograms(*self.block(start, stop), n_bins)


def average_precision_per_query(
    query_codes: ArrayLike,
    db_codes: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    top_k: int | None = None,
    tie_rule: TieRule = "index",
    *,
    packed: bool = False,
    chunk_size: int | None = None,
    num_threads: int | None = None,
    backend: Backend = "auto",
) -> np.ndarray:
    """AP@top_k (AP@all when None) of every query, float64 (Q,).

    Codes are +-1 (Q, bits), (N, bits), or uint8 packed (Q, B), (N, B) with ``packed=True``;
    labels are multi-hot (Q, L), (N, L). ``chunk_size`` is query rows per chunk (default: about
    260k pairs; compiled: 8 chunks per thread), ``num_threads`` the worker threads (default:
    CPU count, at most 4). ``backend``: "auto" (compiled when numba imports), "numpy", "numba".
    """
    prep = _prepare(query_codes, db_codes, query_labels, db_labels, packed)
    n_db, n_query = prep.db_words.shape[1], prep.query_words.shape[0]
    k = _check_top_k(top_k, n_db)
    kernel = _ap_kernel(tie_rule, k, prep.bits + 1)
    if not _use_compiled(backend, n_db):
        return _map_chunks(
            lambda s, e: kernel(*prep.block(s, e)),
            n_query,
            _chunk_rows(n_db, chunk_size),
            num_threads,
        )

    def compiled(start: int, stop: int) -> np.ndarray:
        if tie_rule == "index":
            return ap_kernels.index_ap(*prep.words(start, stop), k)
        return _ap_from_histograms(*prep.histograms(start, stop, prep.bits + 1, True), k)

    rows = _compiled_rows(n_query, chunk_size, num_threads)
    return _map_chunks(compiled, n_query, rows, num_threads)


def mean_average_precision(
    query_codes: ArrayLike,
    db_codes: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    top_k: int | None = None,
    tie_rule: TieRule = "index",
    *,
    packed: bool = False,
    chunk_size: int | None = None,
    num_threads: int | None = None,
    backend: Backend = "auto",
) -> float:
    """mAP@all (top_k None) or mAP@top_k: the mean of ``average_precision_per_query``."""
    aps = average_precision_per_query(
        query_codes,
        db_codes,
        query_labels,
        db_labels,
        top_k,
        tie_rule,
        packed=packed,
        chunk_size=chunk_size,
        num_threads=num_threads,
        backend=backend,
    )
    return float(aps.mean())


def precision_at_k(
    query_codes: ArrayLike,
    db_codes: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    ks: Sequence[int] | ArrayLike,
    *,
    packed: bool = False,
    chunk_size: int | None = None,
    num_threads: int | None = None,
) -> np.ndarray:
    """Mean precision@k over queries for each k in ``ks`` (1 <= k <= N), float64 (len(ks),).

    Ranking by distance with ties broken by database index.
    """
    prep = _prepare(query_codes, db_codes, query_labels, db_labels, packed)
    n_db = prep.db_words.shape[1]
    ks = np.asarray(ks)
    if ks.ndim != 1 or ks.size == 0 or not np.issubdtype(ks.dtype, np.integer):
        raise ValueError(f"ks must be a non-empty 1-D sequence of ints, got {ks!r}")
    if ks.min() < 1 or ks.max() > n_db:
        raise ValueError(f"ks must lie in [1, {n_db}] (database size), got {ks.tolist()}")

    def chunk(start: int, stop: int) -> np.ndarray:
        ranked = _ranked_relevance(*prep.block(start, stop), int(ks.max()))
        hits = np.cumsum(ranked, axis=1, dtype=np.int64)[:, ks - 1]
        return hits / ks  # (n, len(ks))

    rows = _chunk_rows(n_db, chunk_size)
    return _map_chunks(chunk, prep.query_words.shape[0], rows, num_threads).mean(axis=0)


def precision_recall_curve(
    query_codes: ArrayLike,
    db_codes: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    *,
    packed: bool = False,
    bits: int | None = None,
    chunk_size: int | None = None,
    num_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall, float64 (bits + 1,) each, of retrieving by Hamming radius 0..bits.

    At radius r a query retrieves the items at distance <= r. Both are means over queries of the
    per-query value, and a query enters a mean only where its value is defined: precision at r
    over queries that retrieve something within r, recall over queries with at least one relevant
    item. A mean over no queries is NaN. ``bits`` (packed codes only) defaults to 8 * bytes.
    """
    prep = _prepare(query_codes, db_codes, query_labels, db_labels, packed, bits)
    hits, retrieved, n_rel = _radius_counts(prep, chunk_size, num_threads)
    precision = _mean_defined(hits, retrieved)
    recall = _mean_defined(hits, np.broadcast_to(n_rel[:, None], hits.shape))
    return precision, recall


def precision_within_radius(
    query_codes: ArrayLike,
    db_codes: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    radius: int = 2,
    *,
    empty: EmptyRule = "zero",
    packed: bool = False,
    chunk_size: int | None = None,
    num_threads: int | None = None,
) -> float:
    """Mean precision of the items within Hamming distance ``radius`` of each query.

    ``empty="zero"`` (default, the convention of the hashing literature since CNNH): a query that
    retrieves nothing has precision 0. ``empty="exclude"``: such queries are left out, which is
    ``precision_recall_curve(...)[0][radius]``; NaN if no query retrieves anything.
    """
    if isinstance(radius, bool) or not isinstance(radius, int | np.integer) or radius < 0:
        raise ValueError(f"radius must be a non-negative int, got {radius!r}")
    if empty not in ("zero", "exclude"):
        raise ValueError(f"empty must be 'zero' or 'exclude', got {empty!r}")
    prep = _prepare(query_codes, db_codes, query_labels, db_labels, packed)
    hits, retrieved, _ = _radius_counts(prep, chunk_size, num_threads)
    r = min(int(radius), prep.bits)
    if empty == "exclude":
        return float(_mean_defined(hits[:, r : r + 1], retrieved[:, r : r + 1])[0])
    precision = np.divide(
        hits[:, r], retrieved[:, r], out=np.zeros(hits.shape[0]), where=retrieved[:, r] > 0
    )
    return float(precision.mean())


def _radius_counts(
    prep: _Prepared, chunk_size: int | None, num_threads: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query: relevant and all items within radius 0..bits (Q, bits+1), relevant total (Q,)."""
    n_bins, n_db, n_query = prep.bits + 1, prep.db_words.shape[1], prep.query_words.shape[0]
    compiled = _use_compiled("auto", n_db)

    def chunk(start: int, stop: int) -> np.ndarray:
        counts, rel_counts = prep.histograms(start, stop, n_bins, compiled)
        return np.stack([np.cumsum(rel_counts, axis=1), np.cumsum(counts, axis=1)], axis=1)

    if compiled:
        rows = _compiled_rows(n_query, chunk_size, num_threads)
    else:
        rows = _chunk_rows(n_db, chunk_size)
    both = _map_chunks(chunk, n_query, rows, num_threads)
    return both[:, 0], both[:, 1], both[:, 0, -1]


def _mean_defined(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Column means of numerator / denominator over rows where denominator > 0 (else NaN)."""
    defined = denominator > 0
    ratio = np.divide(numerator, denominator, out=np.zeros(numerator.shape), where=defined)
    n_defined = defined.sum(axis=0)
    return np.divide(
        ratio.sum(axis=0), n_defined, out=np.full(n_defined.shape, np.nan), where=n_defined > 0
    )


# ----------------------------------------------------------------------------------------------
# Average precision from distances


def average_precision_from_distances(
    dist: ArrayLike,
    rel: ArrayLike,
    top_k: int | None = None,
    tie_rule: TieRule = "index",
    chunk_size: int | None = None,
) -> np.ndarray:
    """AP@top_k (AP@all when None) per query, float64 (Q,), from precomputed values.

    ``dist``: non-negative integer distances (Q, N), e.g. from ``hamming_distance``; ``rel``:
    bool relevance (Q, N). Same conventions as ``average_precision_per_query``.
    """
    dist = _as_2d(dist, "dist")
    rel = np.ascontiguousarray(_as_2d(rel, "rel"), dtype=bool)
    if dist.shape != rel.shape:
        raise ValueError(f"dist {dist.shape} and rel {rel.shape} must have the same shape")
    if not np.issubdtype(dist.dtype, np.integer):
        raise ValueError(f"dist must hold integers, got dtype {dist.dtype}")
    if dist.size and dist.min() < 0:
        raise ValueError("dist must be non-negative")
    n_bins = int(dist.max()) + 1 if dist.size else 1
    dist = dist.astype(_small_uint(n_bins - 1), copy=False)
    k = _check_top_k(top_k, dist.shape[1])
    kernel = _ap_kernel(tie_rule, k, n_bins)
    rows = _chunk_rows(dist.shape[1], chunk_size)
    return _map_chunks(lambda s, e: kernel(dist[s:e], rel[s:e]), dist.shape[0], rows, 1)


def _ap_kernel(
    tie_rule: str, k: int, n_bins: int
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if tie_rule == "index":
        return lambda dist, rel: _ap_tie_index(dist, rel, k)
    if tie_rule == "average":
        return lambda dist, rel: _ap_tie_average(dist, rel, k, n_bins)
    raise ValueError(f"tie_rule must be 'index' or 'average', got {tie_rule!r}")


def _ranked_relevance(dist: np.ndarray, rel: np.ndarray, k: int) -> np.ndarray:
    """bool (n, k): relevance of each query's top k, sorted by (distance, database index)."""
    n, n_db = dist.shape
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]  # radix sort for small uint keys
    order += (np.arange(n, dtype=order.dtype) * n_db)[:, None]  # flat indices into rel
    return np.ascontiguousarray(rel).ravel()[order]


def _ap_tie_index(dist: np.ndarray, rel: np.ndarray, k: int) -> np.ndarray:
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


def _ap_tie_average(dist: np.ndarray, rel: np.ndarray, k: int, n_bins: int) -> np.ndarray:
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
    return _ap_from_histograms(*_histograms(dist, rel, n_bins), k)


def _ap_from_histograms(counts: np.ndarray, rel_counts: np.ndarray, k: int) -> np.ndarray:
    """``_ap_tie_average`` from items and relevant items per distance, int64 (n, n_bins)."""
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


def _histograms(dist: np.ndarray, rel: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
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


# ----------------------------------------------------------------------------------------------
# Validation and chunking


def _as_2d(a: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {a.shape}")
    return a


def _check_same_width(query: np.ndarray, db: np.ndarray, q_name: str, db_name: str) -> None:
    if query.shape[1] != db.shape[1]:
        raise ValueError(f"{q_name} {query.shape} and {db_name} {db.shape} differ in code width")
    if db.shape[0] == 0:
        raise ValueError(f"{db_name} is empty, shape {db.shape}")


def _prepare(
    query_codes: ArrayLike,
    db_codes: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    packed: bool,
    bits: int | None = None,
) -> _Prepared:
    """Validate inputs and convert codes and labels to uint64 bit words."""
    if packed:
        query = as_packed_codes(query_codes, name="query_codes")
        width = query.shape[1]
        bits = 8 * width if bits is None else bits
        query = as_packed_codes(query, bits, "query_codes")
        db = as_packed_codes(db_codes, bits, "db_codes")
    else:
        query, db = _as_2d(query_codes, "query_codes"), _as_2d(db_codes, "db_codes")
        for name, codes in (("query_codes", query), ("db_codes", db)):
            if codes.dtype == np.uint8 and codes.size and codes.max() > 1:
                raise ValueError(f"{name} looks packed (uint8 > 1); pass packed=True")
        _check_same_width(query, db, "query_codes", "db_codes")
        bits = query.shape[1]
        query, db = pack_codes(query), pack_codes(db)
    _check_same_width(query, db, "query_codes", "db_codes")
    if query.shape[0] == 0:
        raise ValueError(f"query_codes is empty, shape {query.shape}")
    query_labels_w, db_labels_w = _label_words(query_labels, db_labels)
    for name, codes, labels in (
        ("query", query, query_labels_w),
        ("db", db, db_labels_w.T),
    ):
        if codes.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{name}_codes has {codes.shape[0]} rows but {name}_labels has {labels.shape[0]}"
            )
    db_words = _to_words(db).T.copy()
    return _Prepared(_to_words(query), db_words, query_labels_w, db_labels_w.copy(), bits)


def _check_top_k(top_k: int | None, n_db: int) -> int:
    """top_k None -> N; ints >= 1 are clipped to N (AP@K for K >= N is AP@all)."""
    if top_k is None:
        return n_db
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
        raise ValueError(f"top_k must be None or a positive int, got {top_k!r}")
    return min(int(top_k), n_db)


def _use_compiled(backend: str, n_db: int) -> bool:
    """Whether to run the compiled kernels; "numba" raises where they cannot run."""
    if backend not in ("auto", "numpy", "numba"):
        raise ValueError(f"backend must be 'auto', 'numpy' or 'numba', got {backend!r}")
    if backend == "numpy":
        return False
    fits = n_db <= ap_kernels.MAX_ITEMS
    if backend == "numba":
        if not fits:
            raise ValueError(f"the compiled kernels take at most {ap_kernels.MAX_ITEMS} items")
        ap_kernels.require()
        return True
    return fits and ap_kernels.available()


def _compiled_rows(n_query: int, chunk_size: int | None, num_threads: int | None) -> int:
    """Query rows per chunk on the compiled path: chunk_size, else 8 chunks per thread."""
    if chunk_size is not None:
        return _chunk_rows(1, chunk_size)
    chunks = _COMPILED_CHUNKS_PER_THREAD * _thread_count(num_threads, n_query)
    return max(1, -(-n_query // chunks))


def _chunk_rows(n_db: int, chunk_size: int | None) -> int:
    if chunk_size is None:
        return max(1, _CHUNK_PAIRS // max(n_db, 1))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    return chunk_size


def _map_chunks(
    fn: Callable[[int, int], np.ndarray], n_rows: int, rows: int, num_threads: int | None
) -> np.ndarray:
    """Concatenate fn(start, stop) over row chunks, on up to num_threads threads."""
    bounds = [(s, min(s + rows, n_rows)) for s in range(0, n_rows, rows)]
    threads = _thread_count(num_threads, len(bounds))
    if threads == 1:
        return np.concatenate([fn(s, e) for s, e in bounds])
    with ThreadPoolExecutor(threads) as pool:
        return np.concatenate(list(pool.map(lambda b: fn(*b), bounds)))


def _thread_count(num_threads: int | None, n_chunks: int) -> int:
    if num_threads is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cpus = os.cpu_count() or 1
        num_threads = min(cpus, _MAX_THREADS)
    elif isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be None or a positive int, got {num_threads!r}")
    return max(1, min(num_threads, n_chunks))
