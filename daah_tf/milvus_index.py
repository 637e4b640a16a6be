"""A Hamming index on Milvus (BINARY_VECTOR field, HAMMING metric), through pymilvus.

The same code talks to embedded Milvus Lite (``uri`` a local file path ending in .db) or to a
Milvus server (``uri="http://host:19530"``, optionally ``token``), so an index can outgrow one
machine without changing the caller. Interface and results as daah_tf.index.HammingIndex:
``add(packed_codes, ids)``, ``search(query_packed, k) -> (ids, distances)`` sorted by distance.
Which items win a tie at equal distance is Milvus's choice, so compare with the faiss backend
as distance multisets (tests/test_milvus_index.py).

Measured with the ``milvus`` extra: Milvus Lite 2.5.1 (pymilvus 2.5.x, setuptools < 81 for its
pkg_resources import) supports BINARY_VECTOR with the BIN_FLAT index (exact); Milvus Lite 3.x
refuses BINARY_VECTOR. On a server, BIN_IVF_FLAT is available too (``index_type``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from daah_tf.hamming import as_packed_codes

_INSERT_BATCH = 10_000
MAX_TOP_K = 16_384  # Milvus's limit on topk


class MilvusHammingIndex:
    """Exact (BIN_FLAT) or IVF Hamming k-NN in a Milvus collection of (id, code) rows.

    Args:
        bits: code length; codes are uint8 (n, ceil(bits / 8)), padded to whole bytes.
        uri: "path/to/file.db" (Milvus Lite) or "http://host:19530" (a server).
        collection: the collection name; created when missing (an existing one of another
            code width is refused).
        token: server credentials ("user:password" or an API key), if any.
        index_type: "BIN_FLAT" (exact; the only one Milvus Lite has) or "BIN_IVF_FLAT".
    """

    def __init__(self, bits: int, uri: str, collection: str = "daah_codes", *,
                 token: str | None = None, index_type: str = "BIN_FLAT",
                 nlist: int = 1024) -> None:
        try:
            from pymilvus import DataType, MilvusClient
        except ImportError as err:
            raise ImportError("MilvusHammingIndex needs pymilvus (pip install -e "
                              "'.[milvus]')") from err
        if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or bits < 1:
            raise ValueError(f"bits must be a positive int, got {bits!r}")
        self.bits = int(bits)
        self.dim = 8 * (-(-self.bits // 8))
        self.collection = collection
        self.client = MilvusClient(uri=uri, **({"token": token} if token else {}))
        if self.client.has_collection(collection):
            self._check_existing()
        else:
            schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("code", DataType.BINARY_VECTOR, dim=self.dim)
            params = self.client.prepare_index_params()
            params.add_index("code", index_type=index_type, metric_type="HAMMING",
                             params={"nlist": nlist} if index_type == "BIN_IVF_FLAT" else {})
            self.client.create_collection(collection, schema=schema, index_params=params)
        self.client.load_collection(collection)

    def _check_existing(self):
        fields = {f["name"]: f for f in self.client.describe_collection(self.collection)["fields"]}
        code = fields.get("code")
        dim = code and int(code.get("params", {}).get("dim", -1))
        if dim != self.dim:
            raise ValueError(f"Milvus collection {self.collection!r} holds codes of dim {dim}, "
                             f"not {self.dim}: use another collection name")

    def __len__(self) -> int:
        stats = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(stats[0]["count(*)"])

    def add(self, packed_codes: ArrayLike, ids: ArrayLike) -> None:
        """Insert codes uint8 (n, ceil(bits / 8)) with int ids (n,) (ids must be new)."""
        codes = as_packed_codes(packed_codes, self.bits, "packed_codes")
        ids = np.asarray(ids)
        if ids.shape != (len(codes),) or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must be an integer array of shape ({len(codes)},), "
                             f"got {ids.dtype} {ids.shape}")
        if np.unique(ids).size != ids.size:
            raise ValueError("ids must be unique within the batch")
        for start in range(0, len(codes), _INSERT_BATCH):
            rows = [{"id": int(i), "code": c.tobytes()}
                    for i, c in zip(ids[start:start + _INSERT_BATCH],
                                    codes[start:start + _INSERT_BATCH], strict=True)]
            self.client.insert(self.collection, rows)
        self.client.flush(self.collection)

    def search(self, query_packed: ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray]:
        """ids int64 (Q, k') and Hamming distances int32 (Q, k'), k' = min(k, len)."""
        query = as_packed_codes(query_packed, self.bits, "query_packed")
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_TOP_K:
            raise ValueError(f"k must be an int in [1, {MAX_TOP_K}], got {k!r}")
        k = min(int(k), len(self))
        results = self.client.search(self.collection, data=[q.tobytes() for q in query],
                                     limit=k, anns_field="code",
                                     search_params={"metric_type": "HAMMING"})
        ids = np.array([[hit["id"] for hit in hits] for hits in results], np.int64)
        distances = np.array([[hit["distance"] for hit in hits] for hits in results])
        return ids.reshape(len(query), k), np.rint(distances).astype(np.int32).reshape(
            len(query), k)

    def drop(self) -> None:
        """Delete the collection and its data."""
        self.client.drop_collection(self.collection)

    def close(self) -> None:
        self.client.close()
