"""What the service loads once, at start (the app's lifespan), and shares between requests."""

import dataclasses
import io
import logging
import os

import numpy as np

from daah_tf import search
from daah_tf.run import Run
from daah_tf.serve.model_path import resolve_saved_model

LOG = logging.getLogger("daah_tf.serve")
MODALITIES = ("image", "text")


@dataclasses.dataclass
class ServeSettings:
    """How to serve a run.

    Attributes:
        model_dir: the run directory (daah_tf.train --model_dir).
        index_dir: the index folder (default DIR/index); built from the run's database split
            when it holds no index and `build_index` is set.
        model_name: the NAME of the TF-Serving-style route /v1/models/NAME:predict.
        backend: HammingIndex backend ("auto", "faiss", "numpy").
        max_batch: most queries per SavedModel call; batch_wait_ms: longest wait for more.
        api_key: the key every /v1 request must present (None: no key, loopback only).
        max_body_bytes: largest request body accepted (an image upload).
    """

    model_dir: str
    index_dir: str | None = None
    model_name: str = "daah"
    backend: str = "auto"
    build_index: bool = True
    max_batch: int = 32
    batch_wait_ms: float = 1.0
    api_key: str | None = None
    max_body_bytes: int = 8 << 20


class ServiceState:
    """The encoder, the two Hamming indexes, the items and the thumbnails of one run."""

    def __init__(self, settings: ServeSettings):
        from daah_tf.index import HammingIndex
        from daah_tf.serve.thumbnails import Thumbnails

        self.run = Run.open(settings.model_dir)
        self.settings = settings
        self.saved_model_path = resolve_saved_model(settings.model_dir)
        self.encoder = search.ServingEncoder(self.saved_model_path)
        self.bits = self.encoder.bits
        self.inputs = self.run.inputs
        self.index_dir = search.index_dir_of(settings.model_dir, settings.index_dir)
        data = None
        if not os.path.exists(os.path.join(self.index_dir, search.ITEMS_FILE)):
            if not settings.build_index:
                raise FileNotFoundError(f"no index in {self.index_dir}: run python -m "
                                        "daah_tf.search build, or serve with --build_index")
            data = build_index(self.run, self.index_dir, self.encoder, settings.backend)
        header = search.load_items(self.index_dir)
        if header.get("bits") != self.bits:
            raise ValueError(f"{self.index_dir} holds {header.get('bits')}-bit codes but the "
                             f"SavedModel gives {self.bits}: rebuild the index")
        if header.get("saved_model_fingerprint") not in (None, self.encoder.fingerprint()):
            LOG.warning("%s was built from another export; rebuild it for matching codes",
                        self.index_dir)
        self.header = {key: value for key, value in header.items() if key != "items"}
        self.items = {int(item["id"]): item for item in header["items"]}
        self.indexes = {modality: HammingIndex.load(os.path.join(self.index_dir,
                                                                 f"{modality}.npz"),
                                                    settings.backend)
                        for modality in MODALITIES}
        image_kind = self.inputs["image_kind"]
        pixels = None
        if image_kind == "pixels":  # synthetic data: the pictures live in memory only
            data = data or self.run.load_data()
            pixels = data.images
        data_root = self.run.config.data.data_dir if image_kind == "paths" else None
        self.thumbnails = Thumbnails(self.items, image_kind, data_root, pixels)
        self.warm_up()

    @property
    def takes_raw_text(self):
        return self.encoder.takes_raw_text

    @property
    def takes_image_files(self):
        return self.encoder.takes_image_files

    def image_size(self):
        """(H, W) of the model's image input (image models)."""
        return tuple(int(v) for v in self.inputs["image_shape"][:2])

    def warm_up(self):
        """One call per signature and batch size 1, 2: the first calls of a SavedModel run
        graph optimisation (seconds), which must not land on a user's query."""
        for batch in (1, 2):
            if self.takes_raw_text:
                self.encoder.encode_texts(["warm up"] * batch)
            if self.takes_image_files:
                self.encoder.encode_image_files([blank_png(self.image_size())] * batch)

    def search(self, code, target, k):
        """[(id, distance)] of the k nearest items in the `target` index to one packed code."""
        ids, distances = self.indexes[target].search(np.asarray(code, np.uint8)[None], k)
        return [(int(i), int(d)) for i, d in zip(ids[0], distances[0], strict=True)]

    def describe(self):
        version = os.path.basename(self.saved_model_path)
        return {"model_version": version if version.isdigit() else None, "bits": self.bits,
                "dataset": self.header.get("dataset"),
                "split": self.header.get("split"),
                "index_items": {m: len(index) for m, index in self.indexes.items()},
                "takes_raw_text": self.takes_raw_text,
                "takes_image_files": self.takes_image_files,
                "vector_dims": self.encoder.vector_dims(),
                "thumbnails": self.thumbnails.available}


def blank_png(size):
    from PIL import Image

    stream = io.BytesIO()
    Image.new("RGB", (size[1], size[0])).save(stream, "PNG")
    return stream.getvalue()


def build_index(run, index_dir, encoder, backend="auto", split="database"):
    """Encodes the run's `split` into index_dir (as `search build` does, with this encoder);
    returns the dataset (reused for thumbnails)."""
    LOG.warning("no index in %s: encoding the run's %s split (once)", index_dir, split)
    data = run.load_data()
    search.write_index(run, encoder, data, split, index_dir, backend)
    return data
