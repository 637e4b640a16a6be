"""numba kernels behind ``daah_tf.ap_kernels`` (imported only through it, lazily).

Shapes: query code words (n, W) uint64, database code words transposed (W, N) uint64, query
label words (n, WL) uint64, database label words transposed (WL, N) uint64; N < 2**31.
A per-distance counter packs (items) + (relevant items << 32): one read-modify-write per
database item instead of two.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

_LOW = 0xFFFFFFFF
_BLOCK = 2048  # database items per block: 2 x 16 KB of buffers

# cache=True: compiled once per machine (a few seconds), then loaded from __pycache__.
# nogil=True: daah_tf.metrics runs query chunks on its own threads, as on the NumPy path.
_jit = numba.njit(cache=True, nogil=True)


@intrinsic
def _popcount(typingctx, x):  # noqa: ARG001 - numba's intrinsic signature
    """LLVM's ctpop on uint64: one POPCNT instruction (numba compiles for the host CPU)."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):  # noqa: ARG001
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


@_jit
def _fill_block(query_words, db_words, query_labels, db_labels, row, start, dist, shared):
    """Distances and label overlaps of query row and items start:start+len(dist).

    Word-major loops over a block of the database, which LLVM vectorises (an inner loop over
    the W words of each item would not be); blocks keep both buffers in the L1/L2 cache.
    """
    n = min(dist.shape[0], db_words.shape[1] - start)
    query_code = query_words[row, 0]
    for j in range(n):
        dist[j] = _popcount(query_code ^ db_words[0, start + j])
    for w in range(1, query_words.shape[1]):
        query_code = query_words[row, w]
        for j in range(n):
            dist[j] += _popcount(query_code ^ db_words[w, start + j])
    shared[:n] = 0
    for w in range(query_labels.shape[1]):
        query_label = query_labels[row, w]
        for j in range(n):
            shared[j] |= query_label & db_labels[w, start + j]
    return n


@_jit
def _ordered_sum(terms, n):
    """ap_kernels.ordered_sum of terms[:n]: 8 sequential lanes, then a fixed tree."""
    lanes = np.zeros(8)
    full = n - n % 8
    for start in range(0, full, 8):
        for lane in range(8):
            lanes[lane] += terms[start + lane]
    for lane in range(n - full):
        lanes[lane] += terms[full + lane]
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + (
        (lanes[4] + lanes[5]) + (lanes[6] + lanes[7])
    )


@_jit
def index_ap(query_words, db_words, query_labels, db_labels, k, out):
    """Index-rule AP@k of each query row into out (n,) float64."""
    n_db = db_words.shape[1]
    n_bins = 64 * query_words.shape[1] + 1
    counters = np.empty(n_bins, np.int64)
    offsets = np.empty(n_bins, np.int64)
    rel_offsets = np.empty(n_bins, np.int64)
    rel_bin = np.empty(n_db, np.int32)  # distance of the m-th relevant item (index order)
    rel_state = np.empty(n_db, np.int64)  # its counter before it: positions in its group
    terms = np.empty(n_db, np.float64)  # slot i - 1: the term of the i-th relevant by rank
    dist = np.empty(_BLOCK, np.uint64)
    shared = np.empty(_BLOCK, np.uint64)
    for row in range(query_words.shape[0]):
        counters[:] = 0
        n_rel = 0
        for start in range(0, n_db, _BLOCK):  # pass 1, stored unconditionally (no branch)
            n = _fill_block(query_words, db_words, query_labels, db_labels, row, start, dist,
                            shared)
            for j in range(n):
                d = np.int64(dist[j])
                hit = np.int64(shared[j] != 0)
                rel_bin[n_rel] = d
                rel_state[n_rel] = counters[d]
                counters[d] += 1 + (hit << 32)
                n_rel += hit
        items = 0
        rel_items = 0
        for b in range(n_bins):
            offsets[b] = items
            rel_offsets[b] = rel_items
            items += counters[b] & _LOW
            rel_items += counters[b] >> 32
        hits = 0
        for m in range(n_rel):  # pass 2: relevant items only
            b = rel_bin[m]
            state = rel_state[m]
            t = offsets[b] + (state & _LOW)
            if t < k:
                i = rel_offsets[b] + (state >> 32) + 1
                # i / (t + 1), one rounding: what the NumPy path computes (a table lookup of
                # 1 / (t + 1) would be a random read into an N-sized table, and slower)
                terms[i - 1] = np.float64(i) / np.float64(t + 1)
                hits += 1
        out[row] = _ordered_sum(terms, hits) / hits if hits else 0.0


@_jit
def histograms(query_words, db_words, query_labels, db_labels, counts, rel_counts):
    """Items and relevant items per distance of each query row into (n, n_bins) int64."""
    counters = np.empty(counts.shape[1], np.int64)
    dist = np.empty(_BLOCK, np.uint64)
    shared = np.empty(_BLOCK, np.uint64)
    for row in range(query_words.shape[0]):
        counters[:] = 0
        for start in range(0, db_words.shape[1], _BLOCK):
            n = _fill_block(query_words, db_words, query_labels, db_labels, row, start, dist,
                            shared)
            for j in range(n):
                counters[dist[j]] += 1 + (np.int64(shared[j] != 0) << 32)
        for b in range(counts.shape[1]):
            counts[row, b] = counters[b] & _LOW
            rel_counts[row, b] = counters[b] >> 32
