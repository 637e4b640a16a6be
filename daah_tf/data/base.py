"""The in-memory description of a paired dataset that every reader returns.

A reader turns files into a `PairedDataset`: N aligned (image, text) pairs, multi-hot labels and
the protocol's split. Images and texts come in one of a few kinds, so the input pipeline and the
model know what to do with them without knowing the reader.
"""

import dataclasses

import numpy as np

IMAGE_KINDS = ("pixels", "paths", "features")
TEXT_KINDS = ("bow", "raw")
SPLITS = ("query", "database", "train")


class DatasetError(ValueError):
    """Bad or unreadable input data; the message names the file, and the row where known."""


@dataclasses.dataclass
class PairedDataset:
    """N aligned image/text pairs with labels and the protocol's split.

    Attributes:
        name: the dataset's name, e.g. "wiki".
        images: by `image_kind`: "pixels" (N, H, W, 3) uint8; "features" (N, d) or
            (N, h, w, c) float32 (vectors stand in for feature maps); "paths" (N,) str, absolute
            paths of image files (streamed from disk, never all loaded).
        image_kind: one of IMAGE_KINDS.
        texts: by `text_kind`: "bow" (N, V) float32 bag-of-words or text features; "raw" (N,)
            str (featurized later by the text featurizer fitted on the training split).
        text_kind: one of TEXT_KINDS.
        labels: (N, L) float32 multi-hot.
        label_names: L names.
        splits: "query", "database", "train" -> int64 index arrays into the N pairs. "train" is
            a subset of "database" in the standard protocols; "query" is disjoint from both.
        vocabulary: the V tokens of the bag-of-words columns, when known.
        extras: per-pair side information, e.g. "object_boxes" (N, K, 4) for synthetic data.
    """

    name: str
    images: np.ndarray
    image_kind: str
    texts: np.ndarray
    text_kind: str
    labels: np.ndarray
    label_names: list
    splits: dict
    vocabulary: list | None = None
    extras: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.image_kind not in IMAGE_KINDS:
            raise ValueError(f"image_kind must be one of {IMAGE_KINDS}, got {self.image_kind!r}")
        if self.text_kind not in TEXT_KINDS:
            raise ValueError(f"text_kind must be one of {TEXT_KINDS}, got {self.text_kind!r}")
        counts = {"images": len(self.images), "texts": len(self.texts),
                  "labels": len(self.labels)}
        if len(set(counts.values())) != 1:
            raise DatasetError(f"{self.name}: row counts differ between modalities: {counts}")
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise DatasetError(f"{self.name}: splits missing: {missing}")

    def __len__(self):
        return len(self.labels)

    @property
    def image_shape(self):
        """Shape of one image input without the batch (pixels/features only)."""
        if self.image_kind == "paths":
            raise ValueError("image files have no fixed shape; the pipeline resizes them")
        return tuple(self.images.shape[1:])

    def subset(self, split):
        """Arrays of one split: (images, texts, labels)."""
        index = self.splits[split]
        return self.images[index], self.texts[index], self.labels[index]
