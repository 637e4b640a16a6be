"""Checks an uploaded file is an image the SavedModel can decode, before it joins a batch."""

import io

from PIL import Image, UnidentifiedImageError

# encode_image_bytes decodes with tf.io.decode_image: these are its formats.
_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF",
          b"GIF89a": "GIF", b"BM": "BMP"}
MAX_PIXELS = 40_000_000  # a decompression bomb would exhaust memory in the graph's decoder


class NotAnImage(ValueError):
    pass


def check_image(data: bytes) -> str:
    """The format name of `data` ("PNG", ...); NotAnImage naming the problem otherwise."""
    if not data:
        raise NotAnImage("the upload is empty")
    fmt = next((name for magic, name in _MAGIC.items() if data.startswith(magic)), None)
    if fmt is None:
        raise NotAnImage("the upload is not a JPEG, PNG, GIF or BMP image "
                         f"(it starts with {data[:8]!r})")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise NotAnImage(f"the image is {width}x{height}, over {MAX_PIXELS} pixels")
            image.verify()
    except Image.DecompressionBombError as error:
        raise NotAnImage(f"the image is too large to decode: {error}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise NotAnImage(f"the {fmt} image is truncated or corrupt: {error}") from None
    return fmt
