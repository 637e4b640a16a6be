"""Binary hash codes as bits, and Hamming distances between them, in pure NumPy.

Conventions (shared by ``daah_tf.metrics``, ``daah_tf.index`` and ``daah_tf.milvus_index``; the
SavedModel's ``packed_codes`` output, ``daah_tf.export.pack_bits``, packs the same way):

* Codes: an array of shape (n, bits) holding +-1 values in any integer, float or bool dtype. An
  entry > 0 is bit 1, anything else (-1, 0, NaN) is bit 0, which matches ``sign`` with 0 -> -1.
* Packed codes: ``pack_codes`` stores codes as uint8 of shape (n, ceil(bits / 8)) with
  ``np.packbits(..., bitorder="big")``: code dimension 0 is the most significant bit of byte 0,
  and the unused low bits of the last byte are 0. ``as_packed_codes`` checks that the padding
  bits are 0, so they never add to a distance.
* Words: ``to_words`` views packed codes as uint64 (n, ceil(bytes / 8)), zero bytes padding the
  width; ``distance_block`` XORs and popcounts them, one word at a time.
* Distances: Hamming distances, integers in [0, bits].
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

# Query x database pairs per chunk (~40 bytes each at peak in daah_tf.metrics, ~10 MB per worker
# thread): small enough that NumPy reuses heap memory instead of page-faulting fresh mmap blocks
# each chunk.
CHUNK_PAIRS = 1 << 18


def as_2d(a: ArrayLike, name: str) -> np.ndarray:
    """``a`` as an array, which must be 2-D (ValueError naming ``name`` otherwise)."""
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {a.shape}")
    return a


def check_same_width(query: np.ndarray, db: np.ndarray, q_name: str, db_name: str) -> None:
    """ValueError unless query and db codes have the same width and db holds at least one."""
    if query.shape[1] != db.shape[1]:
        raise ValueError(f"{q_name} {query.shape} and {db_name} {db.shape} differ in code width")
    if db.shape[0] == 0:
        raise ValueError(f"{db_name} is empty, shape {db.shape}")


# ----------------------------------------------------------------------------------------------
# Packing


def pack_codes(codes: ArrayLike) -> np.ndarray:
    """Pack +-1 codes (n, bits) into uint8 (n, ceil(bits / 8)), big bit order, zero padding."""
    codes = as_2d(codes, "codes")
    if codes.shape[1] == 0:
        raise ValueError(f"codes must have at least one bit, got shape {codes.shape}")
    return np.packbits(codes > 0, axis=1, bitorder="big")


def unpack_codes(packed: ArrayLike, bits: int) -> np.ndarray:
    """Unpack uint8 (n, ceil(bits / 8)) codes into int8 +-1 codes (n, bits)."""
    packed = as_packed_codes(packed, bits, "packed")
    return np.unpackbits(packed, axis=1, count=bits, bitorder="big").astype(np.int8) * 2 - 1


def as_packed_codes(packed: ArrayLike, bits: int | None = None, name: str = "packed") -> np.ndarray:
    """Check packed codes: uint8 (n, ceil(bits / 8)) with zero padding bits; C-contiguous copy."""
    packed = as_2d(packed, name)
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


def to_words(packed: np.ndarray) -> np.ndarray:
    """(n, B) uint8 -> (n, ceil(B / 8)) uint64; zero bytes pad the width (they add no distance)."""
    n, width = packed.shape
    padded = np.zeros((n, -(-width // 8) * 8), dtype=np.uint8)
    padded[:, :width] = packed
    return padded.view(np.uint64)


# ----------------------------------------------------------------------------------------------
# Distances


def distance_block(query_words: np.ndarray, db_words_t: np.ndarray) -> np.ndarray:
    """(n, W) uint64 queries x (W, N) uint64 database -> (n, N) smallest unsigned distances.

    Small dtypes matter: NumPy's stable argsort is a one-pass radix sort for 8-bit keys.
    """
    n_words = db_words_t.shape[0]
    dtype = small_uint(64 * n_words)
    buf = np.empty((query_words.shape[0], db_words_t.shape[1]), dtype=np.uint64)
    dist = None
    for w in range(n_words):
        np.bitwise_xor(query_words[:, w, None], db_words_t[w], out=buf)
        count = np.bitwise_count(buf)
        dist = count.astype(dtype, copy=False) if dist is None else np.add(dist, count, out=dist)
    return dist


def small_uint(max_value: int) -> np.dtype:
    """The smallest unsigned integer dtype that holds 0..max_value."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def chunk_rows(n_db: int, chunk_size: int | None) -> int:
    """Query rows per chunk against ``n_db`` database items: ``chunk_size`` (checked), or about
    ``CHUNK_PAIRS`` query x database pairs per chunk."""
    if chunk_size is None:
        return max(1, CHUNK_PAIRS // max(n_db, 1))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    return chunk_size


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
    check_same_width(query, db, "query_packed", "db_packed")
    query_words, db_words = to_words(query), to_words(db).T.copy()
    out = np.empty((query.shape[0], db.shape[0]), dtype=dtype)
    rows = chunk_rows(db.shape[0], chunk_size)
    for start in range(0, query.shape[0], rows):
        out[start : start + rows] = distance_block(query_words[start : start + rows], db_words)
    return out
