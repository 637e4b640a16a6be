"""Small pictures of database images for the web page, by item id.

Three sources, by the dataset's image kind:

* "paths" (folder datasets): the item's image file, opened only if its real path lies inside
  the run's data folder (symlinks resolved), so a tampered items.json cannot read other files;
* "pixels" (synthetic data): the in-memory picture of the item's dataset row;
* "features" (vector datasets): none; a request gets 404 saying so.

Pictures are resized server-side to at most `size` x `size` (aspect kept; small pictures are
enlarged with nearest-neighbour so their pixels stay crisp) and cached (LRU).
"""

import io
import os
from collections import OrderedDict
from threading import Lock

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_SIZE = 512
_CACHE_ITEMS = 512


class ThumbnailError(Exception):
    """A thumbnail that cannot be given: .status is the HTTP status (403, 404, 415)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Thumbnails:
    """Thumbnail bytes by item id.

    Args:
        items: {id: item dict of items.json} (its "image" is an absolute path for folders).
        image_kind: "paths", "pixels" or "features".
        data_root: the data folder (kind "paths"): files outside it are refused.
        pixels: (N, H, W, 3) uint8 dataset images (kind "pixels"), indexed by item id.
    """

    def __init__(self, items, image_kind, data_root=None, pixels=None):
        self.items = items
        self.image_kind = image_kind
        self.data_root = os.path.realpath(data_root) if data_root else None
        self.pixels = pixels
        self._cache = OrderedDict()
        self._lock = Lock()

    @property
    def available(self):
        return self.image_kind in ("paths", "pixels")

    def get(self, item_id, size):
        """(bytes, media type) of item `item_id` within size x size; ThumbnailError if none."""
        if item_id not in self.items:
            raise ThumbnailError(404, f"no item {item_id} in the index")
        key = (item_id, size)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        result = self._render(item_id, size)
        with self._lock:
            self._cache[key] = result
            while len(self._cache) > _CACHE_ITEMS:
                self._cache.popitem(last=False)
        return result

    def _render(self, item_id, size):
        if self.image_kind == "pixels" and self.pixels is not None:
            picture = Image.fromarray(np.asarray(self.pixels[item_id], dtype=np.uint8))
            return _encode(_fit(picture, size), "PNG"), "image/png"
        if self.image_kind == "paths":
            path = self._confined(self.items[item_id].get("image"))
            try:
                with Image.open(path) as opened:
                    picture = opened.convert("RGB")
            except (OSError, UnidentifiedImageError) as error:
                raise ThumbnailError(415, f"item {item_id}: {os.path.basename(path)} is not a "
                                     f"readable image ({type(error).__name__})") from None
            return _encode(_fit(picture, size), "JPEG"), "image/jpeg"
        what = "feature vectors" if self.image_kind == "features" else self.image_kind
        raise ThumbnailError(404, f"no thumbnail: this dataset's images are {what}, not pictures")

    def _confined(self, path):
        if not path or self.data_root is None:
            raise ThumbnailError(404, "no thumbnail: the item has no image file")
        real = os.path.realpath(path)
        if os.path.commonpath([real, self.data_root]) != self.data_root:
            raise ThumbnailError(403, "the item's image lies outside the data folder; refused")
        if not os.path.isfile(real):
            raise ThumbnailError(404, f"image file {os.path.basename(real)} is missing")
        return real


def _fit(picture, size):
    """Resize to fit size x size, keeping the aspect ratio."""
    width, height = picture.size
    scale = size / max(width, height)
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    method = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    return picture.resize(target, method)


def _encode(picture, fmt):
    stream = io.BytesIO()
    picture.save(stream, fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return stream.getvalue()
