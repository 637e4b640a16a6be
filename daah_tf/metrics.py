"""Retrieval metrics for binary hash codes, in pure NumPy.

Conventions used throughout the module:

* Codes, packed codes and distances as in ``daah_tf.hamming`` (which packs codes and computes
  Hamming distances; ``pack_codes``, ``unpack_codes``, ``as_packed_codes`` and
  ``hamming_distance`` are importable from here too): +-1 codes (n, bits), an entry > 0 being
  bit 1, or uint8 (n, ceil(bits / 8)) packed codes, big bit order, zero padding bits. Functions
  taking codes accept packed codes with ``packed=True``; the padding bits must then be 0
  (checked), so they never add to a distance.
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
  ``daah_tf.average_precision.tie_average`` for the formula and for top_k cut-offs that split a
  tied group.

Everything is vectorised over queries: queries go in chunks of rows of about 260k query x
database pairs (~40 bytes per pair at peak, so ~10 MB per chunk whatever the database size), and
chunks run on a few threads (NumPy's sort, gather and ufunc loops release the GIL). That
machinery (inputs as uint64 bit words, blocks of a query chunk, backend choice, threads) is in
``daah_tf.query_chunks``, the AP formulas on distance blocks in ``daah_tf.average_precision``.

Backends: where numba imports (extra ``fast``), AP and the radius metrics use the compiled
kernels of ``daah_tf.ap_kernels`` (distance, relevance and the counting pass fused, O(N) scratch
per thread, no (n, N) arrays), with bitwise-identical results; ``backend="numpy"`` forces the
NumPy path, ``backend="numba"`` requires the compiled one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from daah_tf import ap_kernels, average_precision
from daah_tf.hamming import (  # noqa: F401 (codes, packing, distances: re-exported)
    as_2d,
    as_packed_codes,
    chunk_rows,
    hamming_distance,
    pack_codes,
    small_uint,
    unpack_codes,
)
from daah_tf.query_chunks import (
    Prepared,
    compiled_rows,
    label_words,
    map_chunks,
    prepare,
    relevance_block,
    use_compiled,
)

TieRule = Literal["index", "average"]
EmptyRule = Literal["exclude", "zero"]
Backend = Literal["auto", "numpy", "numba"]


# ----------------------------------------------------------------------------------------------
# Relevance


def relevance(query_labels: ArrayLike, db_labels: ArrayLike) -> np.ndarray:
    """bool (Q, N): query i and database item j share at least one label ((Q, L), (N, L))."""
    query, db = label_words(query_labels, db_labels)
    return relevance_block(query, db)


# ----------------------------------------------------------------------------------------------
# Public metrics on codes


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
    prep = prepare(query_codes, db_codes, query_labels, db_labels, packed)
    n_db, n_query = prep.db_words.shape[1], prep.query_words.shape[0]
    k = average_precision.check_top_k(top_k, n_db)
    kernel = average_precision.kernel(tie_rule, k, prep.bits + 1)
    if not use_compiled(backend, n_db):
        return map_chunks(
            lambda s, e: kernel(*prep.block(s, e)),
            n_query,
            chunk_rows(n_db, chunk_size),
            num_threads,
        )

    def compiled(start: int, stop: int) -> np.ndarray:
        if tie_rule == "index":
            return ap_kernels.index_ap(*prep.words(start, stop), k)
        counts = prep.histograms(start, stop, prep.bits + 1, True)
        return average_precision.from_histograms(*counts, k)

    rows = compiled_rows(n_query, chunk_size, num_threads)
    return map_chunks(compiled, n_query, rows, num_threads)


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
    prep = prepare(query_codes, db_codes, query_labels, db_labels, packed)
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

    rows = chunk_rows(n_db, chunk_size)
    return map_chunks(chunk, prep.query_words.shape[0], rows, num_threads).mean(axis=0)


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
    prep = prepare(query_codes, db_codes, query_labels, db_labels, packed, bits)
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
    prep = prepare(query_codes, db_codes, query_labels, db_labels, packed)
    hits, retrieved, _ = _radius_counts(prep, chunk_size, num_threads)
    r = min(int(radius), prep.bits)
    if empty == "exclude":
        return float(_mean_defined(hits[:, r : r + 1], retrieved[:, r : r + 1])[0])
    precision = np.divide(
        hits[:, r], retrieved[:, r], out=np.zeros(hits.shape[0]), where=retrieved[:, r] > 0
    )
    return float(precision.mean())


def _radius_counts(
    prep: Prepared, chunk_size: int | None, num_threads: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query: relevant and all items within radius 0..bits (Q, bits+1), relevant total (Q,)."""
    n_bins, n_db, n_query = prep.bits + 1, prep.db_words.shape[1], prep.query_words.shape[0]
    compiled = use_compiled("auto", n_db)

    def chunk(start: int, stop: int) -> np.ndarray:
        counts, rel_counts = prep.histograms(start, stop, n_bins, compiled)
        return np.stack([np.cumsum(rel_counts, axis=1), np.cumsum(counts, axis=1)], axis=1)

    if compiled:
        rows = compiled_rows(n_query, chunk_size, num_threads)
    else:
        rows = chunk_rows(n_db, chunk_size)
    both = map_chunks(chunk, n_query, rows, num_threads)
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
    dist = as_2d(dist, "dist")
    rel = np.ascontiguousarray(as_2d(rel, "rel"), dtype=bool)
    if dist.shape != rel.shape:
        raise ValueError(f"dist {dist.shape} and rel {rel.shape} must have the same shape")
    if not np.issubdtype(dist.dtype, np.integer):
        raise ValueError(f"dist must hold integers, got dtype {dist.dtype}")
    if dist.size and dist.min() < 0:
        raise ValueError("dist must be non-negative")
    n_bins = int(dist.max()) + 1 if dist.size else 1
    dist = dist.astype(small_uint(n_bins - 1), copy=False)
    k = average_precision.check_top_k(top_k, dist.shape[1])
    kernel = average_precision.kernel(tie_rule, k, n_bins)
    rows = chunk_rows(dist.shape[1], chunk_size)
    return map_chunks(lambda s, e: kernel(dist[s:e], rel[s:e]), dist.shape[0], rows, 1)



def _ranked_relevance(dist: np.ndarray, rel: np.ndarray, k: int) -> np.ndarray:
    """bool (n, k): relevance of each query's top k, sorted by (distance, database index)."""
    n, n_db = dist.shape
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]  # radix sort for small uint keys
    order += (np.arange(n, dtype=order.dtype) * n_db)[:, None]  # flat indices into rel
    return np.ascontiguousarray(rel).ravel()[order]
