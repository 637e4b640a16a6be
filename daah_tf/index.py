"""Exact Hamming k-nearest-neighbour index over packed binary codes.

Codes are packed as in ``daah_tf.metrics.pack_codes``: uint8 (n, ceil(bits / 8)), big bit order,
zero padding bits. Results are sorted by (Hamming distance, insertion position): among items at
equal distance, the one added earlier comes first, on both backends:

* ``"faiss"``: ``faiss.IndexBinaryFlat``. Its exact search scans the database in position order
  and its heaps compare (distance, position) pairs, so it returns exactly that order (checked
  against the NumPy backend in tests/test_index.py).
* ``"numpy"``: chunked XOR + popcount, then ``np.argpartition`` on the unique key
  distance * 2**32 + position and a sort of the k survivors.
* ``"auto"``: faiss when ``import faiss`` works, else NumPy.

``save`` writes an ``.npz`` (``format_version``, ``bits``, ``codes`` uint8 (N, B), ``ids`` int64
(N,)) atomically, and ``load`` reads it with ``allow_pickle=False``; nothing is pickled.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from daah_tf.atomic import atomic_writer
from daah_tf.metrics import _distance_block, _to_words, as_packed_codes

Backend = Literal["auto", "numpy", "faiss"]

FORMAT_VERSION = 1
# Query x database pairs per chunk of the NumPy search; ~25 bytes each at peak.
_CHUNK_PAIRS = 1 << 21


class HammingIndex:
    """Exact Hamming k-NN over ``bits``-bit packed codes, with int64 ids.

    Args:
        bits: code length in bits; added and query codes must be uint8 (n, ceil(bits / 8)).
        backend: "auto" (faiss if installed, else numpy), "numpy" or "faiss".
    """

    def __init__(self, bits: int, backend: Backend = "auto") -> None:
        if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or bits < 1:
            raise ValueError(f"bits must be a positive int, got {bits!r}")
        self.bits = int(bits)
        self.backend = _resolve_backend(backend)
        self._code_blocks: list[np.ndarray] = []
        self._id_blocks: list[np.ndarray] = []
        self._codes: np.ndarray | None = np.zeros((0, self.code_bytes), dtype=np.uint8)
        self._ids: np.ndarray | None = np.zeros(0, dtype=np.int64)
        self._db_words_t: np.ndarray | None = None  # (W, N) uint64, NumPy backend cache
        self._faiss = None
        if self.backend == "faiss":
            self._faiss = _import_faiss().IndexBinaryFlat(8 * self.code_bytes)

    @property
    def code_bytes(self) -> int:
        """Bytes per packed code, ceil(bits / 8)."""
        return -(-self.bits // 8)

    def __len__(self) -> int:
        return sum(len(block) for block in self._id_blocks)

    def add(self, packed_codes: ArrayLike, ids: ArrayLike | None = None) -> None:
        """Append codes uint8 (n, ceil(bits / 8)) with unique int ids (n,) (default: positions)."""
        codes = as_packed_codes(packed_codes, self.bits, "packed_codes")
        if ids is None:
            ids = np.arange(len(self), len(self) + len(codes), dtype=np.int64)
        ids = np.asarray(ids)
        if ids.shape != (len(codes),) or not (
            np.issubdtype(ids.dtype, np.integer) and ids.dtype != np.uint64
        ):
            raise ValueError(
                f"ids must be an integer array of shape ({len(codes)},), "
                f"got {ids.dtype} {ids.shape}"
            )
        ids = ids.astype(np.int64)
        if np.unique(ids).size != ids.size or np.isin(ids, self._all_ids()).any():
            raise ValueError("ids must be unique, within the batch and across the index")
        if not len(codes):
            return
        self._code_blocks.append(codes)
        self._id_blocks.append(ids)
        self._codes = self._ids = self._db_words_t = None
        if self._faiss is not None:
            self._faiss.add(codes)

    def search(self, query_packed: ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest codes of each query (Q, ceil(bits / 8)) uint8.

        Returns ids int64 (Q, k') and distances int32 (Q, k'), k' = min(k, len(index)), sorted
        by (distance, insertion position).
        """
        query = as_packed_codes(query_packed, self.bits, "query_packed")
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if len(self) == 0:
            raise ValueError("cannot search an empty HammingIndex; add codes first")
        k = min(int(k), len(self))
        if self._faiss is not None:
            distances, positions = self._faiss.search(query, k)
        else:
            positions, distances = self._numpy_search(query, k)
        return self._all_ids()[positions], distances.astype(np.int32, copy=False)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` (an .npz, exactly this name) atomically."""
        path = os.fspath(path)
        with atomic_writer(path) as stream:
            np.savez(
                stream,
                format_version=np.int64(FORMAT_VERSION),
                bits=np.int64(self.bits),
                codes=self._all_codes(),
                ids=self._all_ids(),
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str], backend: Backend = "auto") -> HammingIndex:
        """Read an index written by ``save`` (no pickle)."""
        with np.load(os.fspath(path), allow_pickle=False) as data:
            missing = {"format_version", "bits", "codes", "ids"} - set(data.files)
            if missing:
                raise ValueError(f"{path} is not a HammingIndex file: missing {sorted(missing)}")
            version = int(data["format_version"])
            if version != FORMAT_VERSION:
                raise ValueError(f"{path} has format_version {version}, expected {FORMAT_VERSION}")
            index = cls(int(data["bits"]), backend)
            codes, ids = data["codes"], data["ids"]
        if len(ids):
            index.add(codes, ids)
        return index

    def _all_codes(self) -> np.ndarray:
        if self._codes is None:
            self._codes = np.concatenate(self._code_blocks)
            self._code_blocks = [self._codes]
        return self._codes

    def _all_ids(self) -> np.ndarray:
        if self._ids is None:
            self._ids = np.concatenate(self._id_blocks)
            self._id_blocks = [self._ids]
        return self._ids

    def _numpy_search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions int64 (Q, k) and distances (Q, k) by (distance, position), chunked."""
        if self._db_words_t is None:
            self._db_words_t = _to_words(self._all_codes()).T.copy()
        n_db = self._db_words_t.shape[1]
        if n_db >= 1 << 32:  # positions must fit the low half of the uint64 sort key
            raise ValueError(f"the numpy backend holds < 2**32 codes, this index has {n_db}")
        query_words = _to_words(query)
        rows = max(1, _CHUNK_PAIRS // n_db)
        positions = np.empty((len(query), k), dtype=np.int64)
        distances = np.empty((len(query), k), dtype=np.int32)
        position_key = np.arange(n_db, dtype=np.uint64)
        for start in range(0, len(query), rows):
            dist = _distance_block(query_words[start : start + rows], self._db_words_t)
            # Unique keys make argpartition's choice at the k-th place exact, ties included.
            key = dist.astype(np.uint64) << np.uint64(32) | position_key
            if k < n_db:
                key = np.take_along_axis(key, np.argpartition(key, k - 1, axis=1)[:, :k], axis=1)
            key.sort(axis=1)
            positions[start : start + rows] = key & np.uint64(0xFFFFFFFF)
            distances[start : start + rows] = key >> np.uint64(32)
        return positions, distances


def _resolve_backend(backend: str) -> str:
    if backend == "numpy":
        return "numpy"
    if backend == "faiss":
        _import_faiss()
        return "faiss"
    if backend == "auto":
        try:
            _import_faiss()
        except ImportError:
            return "numpy"
        return "faiss"
    raise ValueError(f"backend must be 'auto', 'numpy' or 'faiss', got {backend!r}")


def _import_faiss():
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            "HammingIndex backend='faiss' needs faiss, which is not installed "
            "(pip install faiss-cpu), or use backend='numpy'"
        ) from err
    return faiss
