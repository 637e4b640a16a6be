"""SavedModel export for serving: encode_image / encode_text signatures, TensorFlow only.

Signatures (each returns {"codes": (B, q) int8 in {-1, +1}, "packed_codes": (B, ceil(q/8))
uint8}, the bits packed most significant first, as numpy.packbits does):

    encode_image        images: (B, H, W, 3) float32 in [0, 255] at the model's input size
                        (for datasets given as feature vectors: features (B, d) float32)
    encode_image_bytes  image_bytes: (B,) string, encoded JPEG/PNG/GIF/BMP; decoded and
                        resized in the graph (image models only)
    encode_text         texts: (B,) string, raw text through the text featurizer saved in the
                        graph (for datasets given as text vectors: bow (B, V) float32)
    encode_text_bow     bow: (B, V) float32 bag of words (raw-text models only)

The export is written beside its final place and renamed into it, so a crash never leaves a
half-written saved_model/ that a server would load.
"""

import os
import shutil

import keras
import tensorflow as tf

from daah_tf.losses import binary_codes


def pack_bits(codes):
    """(B, q) +-1 int8 -> (B, ceil(q/8)) uint8, most significant bit first (numpy.packbits)."""
    bits = tf.cast(codes > 0, tf.int32)
    q = tf.shape(bits)[1]
    padding = (-q) % 8
    bits = tf.pad(bits, [[0, 0], [0, padding]])
    groups = tf.reshape(bits, (tf.shape(bits)[0], -1, 8))
    weights = tf.constant([128, 64, 32, 16, 8, 4, 2, 1], tf.int32)
    return tf.cast(tf.reduce_sum(groups * weights, axis=-1), tf.uint8)


def _outputs(real_codes):
    codes = binary_codes(real_codes)
    return {"codes": codes, "packed_codes": pack_bits(codes)}


def _decode_for_model(image_bytes, size):
    def decode(one):
        image = tf.io.decode_image(one, channels=3, expand_animations=False)
        return tf.image.resize(tf.cast(image, tf.float32), size, antialias=True)

    return tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec((*size, 3),
                                                                             tf.float32))


def export_saved_model(model, path, image_kind, image_shape, text_dim, featurizer=None):
    """Writes the serving SavedModel of `model` to `path` (replacing what is there).

    Args:
        model: a built DAAH model.
        path: the target folder, e.g. DIR/saved_model.
        image_kind: the dataset's image kind ("pixels", "paths" or "features").
        image_shape: one image input without the batch, e.g. (48, 48, 3) or (128,).
        text_dim: V.
        featurizer: the run's TextFeaturizer for raw-text datasets, else None.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    image_spec = tf.TensorSpec((None, *image_shape), tf.float32)
    bow_spec = tf.TensorSpec((None, text_dim), tf.float32)
    archive.add_endpoint(
        "encode_image",
        lambda images: _outputs(model.encode_image(images)),
        input_signature=[tf.TensorSpec(image_spec.shape, tf.float32, name="images")],
    )
    if image_kind in ("pixels", "paths"):
        size = tuple(image_shape[:2])
        archive.add_endpoint(
            "encode_image_bytes",
            lambda image_bytes: _outputs(model.encode_image(_decode_for_model(image_bytes, size))),
            input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")],
        )
    if featurizer is not None:
        vectorize = featurizer.layer
        archive.track(vectorize)
        archive.add_endpoint(
            "encode_text",
            lambda texts: _outputs(model.encode_text(vectorize(texts))),
            input_signature=[tf.TensorSpec((None,), tf.string, name="texts")],
        )
        archive.add_endpoint(
            "encode_text_bow",
            lambda bow: _outputs(model.encode_text(bow)),
            input_signature=[tf.TensorSpec(bow_spec.shape, tf.float32, name="bow")],
        )
    else:
        archive.add_endpoint(
            "encode_text",
            lambda bow: _outputs(model.encode_text(bow)),
            input_signature=[tf.TensorSpec(bow_spec.shape, tf.float32, name="bow")],
        )
    parent = os.path.dirname(os.path.abspath(path))
    staging = os.path.join(parent, ".saved_model.partial")
    if os.path.exists(staging):
        shutil.rmtree(staging)
    archive.write_out(staging, verbose=False)
    previous = os.path.join(parent, ".saved_model.previous")
    if os.path.exists(path):
        os.replace(path, previous)
    os.replace(staging, path)
    if os.path.exists(previous):
        shutil.rmtree(previous)
