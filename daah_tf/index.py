"""Exact Hamming k-nearest-neighbour index over packed binary codes.

Codes are packed as in ``daah_tf.hamming.pack_codes``: uint8 (n, ceil(bits / 8)), big bit order,
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
from daah_tf.hamming import as_packed_codes, distance_block, to_words

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
            self._db_words_t = to_words(self._all_codes()).T.copy()
        n_db = self._db_words_t.shape[1]
        if n_db >= 1 << 32:  # positions must fit the low half of the uint64 sort key
            raise ValueError(f"the numpy backend holds < 2**32 codes, this index has {n_db}")
        query_words = to_words(query)
        rows = max(1, _CHUNK_PAIRS // n_db)
        positions = np.empty((len(query), k), dtype=np.int64)
        distances = np.empty((len(query), k), dtype=np.int32)
        position_key = np.arange(n_db, dtype=np.uint64)
        for start in range(0, len(query), rows):
            dist = distance_block(query_words[start : start + rows], self._db_words_t)
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


# ----------------------------------------------------------------------------------------------
# Growing an index file


def grow_index_file(
    path: str | os.PathLike[str],
    packed_codes: ArrayLike,
    ids: ArrayLike,
    backend: Backend = "auto",
) -> HammingIndex:
    """Append items to a saved HammingIndex without re-encoding it, and persist atomically.

    The file is read, the new codes appended (ids unique across old and new, checked), and the
    whole index written beside ``path`` and renamed over it: a reader or a crash sees the old
    index or the new one, never a mix. One writer at a time (a second concurrent writer's
    items would be lost to the last rename). Returns the grown index.
    """
    index = HammingIndex.load(path, backend)
    index.add(packed_codes, ids)
    index.save(path)
    return index


# ----------------------------------------------------------------------------------------------
# Sub-linear search for millions of codes

ApproximateKind = Literal["ivf", "hnsw"]
APPROX_FORMAT_VERSION = 1


class ApproximateHammingIndex:
    """Approximate Hamming k-NN for millions of codes: faiss IndexBinaryIVF or IndexBinaryHNSW.

    ``"ivf"`` clusters the codes into ``nlist`` lists (binary k-means, trained on a sample)
    and scans the ``nprobe`` lists nearest a query: the cost falls from N to about
    N * nprobe / nlist codes per query. ``"hnsw"`` walks a proximity graph (``hnsw_m``
    neighbours per node, ``ef_search`` candidates per query); it needs no training but is
    slow to build. Results are sorted by distance; unlike the exact index, which items win a
    tie at the k-th place is not defined. tools/bench_search.py measures recall against
    HammingIndex (exact) and the speedup.

    Args:
        bits: code length; codes are uint8 (n, ceil(bits / 8)) as in HammingIndex.
        kind: "ivf" or "hnsw".
        nlist: IVF lists (default about 2 * sqrt(N) at the first ``train``).
        nprobe: IVF lists scanned per query.
        hnsw_m, ef_search: HNSW graph degree and search breadth.
    """

    def __init__(
        self,
        bits: int,
        kind: ApproximateKind = "ivf",
        *,
        nlist: int | None = None,
        nprobe: int = 32,
        hnsw_m: int = 16,
        ef_search: int = 128,
    ) -> None:
        self._faiss_module = _import_faiss()
        self.exact = HammingIndex(bits, backend="numpy")  # holds codes and ids for save/ids
        self.bits = self.exact.bits
        if kind not in ("ivf", "hnsw"):
            raise ValueError(f"kind must be 'ivf' or 'hnsw', got {kind!r}")
        for name, value in (("nprobe", nprobe), ("hnsw_m", hnsw_m), ("ef_search", ef_search)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.kind = kind
        self.nlist = nlist
        self.nprobe = int(nprobe)
        self.hnsw_m = int(hnsw_m)
        self.ef_search = int(ef_search)
        self._index = None
        if kind == "hnsw":
            self._index = self._faiss_module.IndexBinaryHNSW(8 * self.exact.code_bytes, hnsw_m)

    def __len__(self) -> int:
        return len(self.exact)

    @property
    def is_trained(self) -> bool:
        return self._index is not None and self._index.is_trained

    def train(self, packed_codes: ArrayLike, seed: int = 0) -> None:
        """IVF: learn the lists' centroids from a sample of codes (>= nlist codes). HNSW: no-op."""
        if self.kind == "hnsw":
            return
        codes = as_packed_codes(packed_codes, self.bits, "packed_codes")
        faiss = self._faiss_module
        nlist = self.nlist or max(1, int(2 * np.sqrt(len(codes))))
        if len(codes) < nlist:
            raise ValueError(f"training an IVF of {nlist} lists needs >= {nlist} codes, "
                             f"got {len(codes)}")
        dim = 8 * self.exact.code_bytes
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(dim), dim, nlist)
        index.cp.seed = seed
        index.train(codes)
        self.nlist = nlist
        self._index = index

    def add(self, packed_codes: ArrayLike, ids: ArrayLike | None = None) -> None:
        """Append codes with unique ids, as HammingIndex.add (IVF: train first)."""
        if not self.is_trained:
            raise ValueError("train the IVF index before adding codes (ApproximateHammingIndex"
                             ".train on a sample)")
        before = len(self.exact)
        self.exact.add(packed_codes, ids)  # checks codes and ids
        new = self.exact._all_codes()[before:]
        if len(new):
            self._index.add(new)

    def search(self, query_packed: ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray]:
        """ids int64 (Q, k') and distances int32 (Q, k'), k' = min(k, len), by distance.

        A query whose probed lists hold fewer than k' codes gets id -1 / distance bits + 1 in
        the missing places (raise nprobe)."""
        query = as_packed_codes(query_packed, self.bits, "query_packed")
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if len(self) == 0:
            raise ValueError("cannot search an empty index; add codes first")
        k = min(int(k), len(self))
        if self.kind == "ivf":
            self._index.nprobe = min(self.nprobe, self.nlist)
        else:
            self._index.hnsw.efSearch = max(self.ef_search, k)
        distances, positions = self._index.search(query, k)
        missing = positions < 0
        ids = self.exact._all_ids()[np.where(missing, 0, positions)]
        ids[missing] = -1
        distances = np.where(missing, self.bits + 1, distances)
        return ids, distances.astype(np.int32, copy=False)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write codes, ids, the parameters and the faiss index (its own byte format, not a
        pickle) to an .npz, atomically."""
        faiss = self._faiss_module
        blob = faiss.serialize_index_binary(self._index) if self._index is not None else None
        with atomic_writer(os.fspath(path)) as stream:
            np.savez(
                stream,
                format_version=np.int64(APPROX_FORMAT_VERSION),
                bits=np.int64(self.bits),
                kind=np.array(self.kind),
                params=np.array([self.nlist or 0, self.nprobe, self.hnsw_m, self.ef_search],
                                np.int64),
                codes=self.exact._all_codes(),
                ids=self.exact._all_ids(),
                faiss_index=np.zeros(0, np.uint8) if blob is None else np.asarray(blob),
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ApproximateHammingIndex:
        with np.load(os.fspath(path), allow_pickle=False) as data:
            need = {"format_version", "bits", "kind", "params", "codes", "ids", "faiss_index"}
            if need - set(data.files):
                raise ValueError(f"{path} is not an ApproximateHammingIndex file: missing "
                                 f"{sorted(need - set(data.files))}")
            if int(data["format_version"]) != APPROX_FORMAT_VERSION:
                raise ValueError(f"{path} has format_version {int(data['format_version'])}, "
                                 f"expected {APPROX_FORMAT_VERSION}")
            nlist, nprobe, hnsw_m, ef_search = (int(v) for v in data["params"])
            index = cls(int(data["bits"]), str(data["kind"]), nlist=nlist or None,
                        nprobe=nprobe, hnsw_m=hnsw_m, ef_search=ef_search)
            blob, codes, ids = data["faiss_index"], data["codes"], data["ids"]
        if len(blob):
            index._index = index._faiss_module.deserialize_index_binary(blob)
        if len(ids):
            index.exact.add(codes, ids)
        if index._index is not None and index._index.ntotal != len(index.exact):
            raise ValueError(f"{path}: faiss index holds {index._index.ntotal} codes but the "
                             f"file has {len(index.exact)} ids")
        return index
