"""How ``daah_tf.metrics`` walks the queries: inputs as bit words, blocks, backends, threads.

``prepare`` validates codes and labels and turns them into uint64 bit words (``Prepared``), from
which a chunk of query rows start:stop yields its distance and relevance blocks (NumPy path),
the arguments of the compiled kernels (``daah_tf.ap_kernels``), or its per-distance histograms
from either. ``use_compiled`` picks the backend, ``compiled_rows`` sizes the compiled path's
chunks and ``map_chunks`` runs the chunks on a few threads (NumPy's sort, gather and ufunc loops
and the compiled kernels release the GIL) and concatenates their results.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from daah_tf import ap_kernels
from daah_tf.average_precision import histograms
from daah_tf.hamming import (
    as_2d,
    as_packed_codes,
    check_same_width,
    chunk_rows,
    distance_block,
    pack_codes,
    to_words,
)

_MAX_THREADS = 4
# Compiled path: query chunks per thread. Its chunks need no (n, N) memory, so they are sized
# for load balance only (threads that finish early take the next chunk).
_COMPILED_CHUNKS_PER_THREAD = 8


def label_words(query_labels: ArrayLike, db_labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Multi-hot (Q, L), (N, L) -> bit-packed uint64 (Q, W) and transposed (W, N)."""
    query = as_2d(query_labels, "query_labels")
    db = as_2d(db_labels, "db_labels")
    if query.shape[1] != db.shape[1]:
        raise ValueError(
            f"query_labels {query.shape} and db_labels {db.shape} have different label counts"
        )
    return to_words(np.packbits(query != 0, axis=1)), to_words(np.packbits(db != 0, axis=1)).T


def relevance_block(query_words: np.ndarray, db_words_t: np.ndarray) -> np.ndarray:
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


class Prepared(NamedTuple):
    """Codes and labels of ``prepare`` as uint64 bit words, and what a query chunk needs."""

    query_words: np.ndarray  # (Q, W) uint64 code bits
    db_words: np.ndarray  # (W, N) uint64 code bits
    query_labels: np.ndarray  # (Q, WL) uint64 label bits
    db_labels: np.ndarray  # (WL, N) uint64 label bits
    bits: int

    def block(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Distances (n, N) small uint and relevance (n, N) bool of queries start:stop."""
        dist = distance_block(self.query_words[start:stop], self.db_words)
        return dist, relevance_block(self.query_labels[start:stop], self.db_labels)

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
        return histograms(*self.block(start, stop), n_bins)


def prepare(
    query_codes: ArrayLike,
    db_codes: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    packed: bool,
    bits: int | None = None,
) -> Prepared:
    """Validate inputs and convert codes and labels to uint64 bit words."""
    if packed:
        query = as_packed_codes(query_codes, name="query_codes")
        width = query.shape[1]
        bits = 8 * width if bits is None else bits
        query = as_packed_codes(query, bits, "query_codes")
        db = as_packed_codes(db_codes, bits, "db_codes")
    else:
        query, db = as_2d(query_codes, "query_codes"), as_2d(db_codes, "db_codes")
        for name, codes in (("query_codes", query), ("db_codes", db)):
            if codes.dtype == np.uint8 and codes.size and codes.max() > 1:
                raise ValueError(f"{name} looks packed (uint8 > 1); pass packed=True")
        check_same_width(query, db, "query_codes", "db_codes")
        bits = query.shape[1]
        query, db = pack_codes(query), pack_codes(db)
    check_same_width(query, db, "query_codes", "db_codes")
    if query.shape[0] == 0:
        raise ValueError(f"query_codes is empty, shape {query.shape}")
    query_labels_w, db_labels_w = label_words(query_labels, db_labels)
    for name, codes, labels in (
        ("query", query, query_labels_w),
        ("db", db, db_labels_w.T),
    ):
        if codes.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{name}_codes has {codes.shape[0]} rows but {name}_labels has {labels.shape[0]}"
            )
    db_words = to_words(db).T.copy()
    return Prepared(to_words(query), db_words, query_labels_w, db_labels_w.copy(), bits)


def use_compiled(backend: str, n_db: int) -> bool:
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


def compiled_rows(n_query: int, chunk_size: int | None, num_threads: int | None) -> int:
    """Query rows per chunk on the compiled path: chunk_size, else 8 chunks per thread."""
    if chunk_size is not None:
        return chunk_rows(1, chunk_size)
    chunks = _COMPILED_CHUNKS_PER_THREAD * _thread_count(num_threads, n_query)
    return max(1, -(-n_query // chunks))


def map_chunks(
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
