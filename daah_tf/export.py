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
    encode_image_features  features: (B, h, w, c) float32 feature maps of the frozen backbone
                        (runs trained on the automatic feature cache only; `encode_image` and
                        `encode_image_bytes` run that backbone in the graph first)

Layout (TF Serving's): DIR/saved_model/<version>/, versions 1, 2, ... Each version is written
into DIR/saved_model/.partial-<version>/ and renamed into place only when complete, so a server
(TF Serving, daah_tf.serve, `latest_saved_model`) sees the previous version or the new one,
never half of one, and there is a servable version at every moment once one exists. The
newest `KEEP_VERSIONS` are kept.
"""

import os
import shutil

import keras
import tensorflow as tf

from daah_tf import faults
from daah_tf.losses import binary_codes
from daah_tf.saved_model_layout import latest_saved_model, versions  # noqa: F401

KEEP_VERSIONS = 3


def pack_bits(codes):
    """(B, q) +-1 int8 -> (B, ceil(q/8)) uint8, most significant bit first, zero padding: the
    bytes of `daah_tf.hamming.pack_codes` (numpy.packbits), computed in the graph."""
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


def export_saved_model(model, path, image_kind, image_shape, text_dim, featurizer=None,
                       backbone=None):
    """Writes the serving SavedModel of `model` as the next version under `path`.

    Args:
        model: a built DAAH model.
        path: the base folder, e.g. DIR/saved_model; the export goes to path/<version>.
        image_kind: the dataset's image kind ("pixels", "paths" or "features").
        image_shape: one image input without the batch, e.g. (48, 48, 3) or (128,).
        text_dim: V.
        featurizer: the run's TextFeaturizer for raw-text datasets, else None.
        backbone: for a model trained on cached features (image_shape is then the feature
            map): the built frozen ImageEncoder those features came from; the image
            signatures take pictures and run it first.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    encode_image = model.encode_image
    if backbone is not None:
        archive.track(backbone)
        archive.add_endpoint(
            "encode_image_features",
            lambda features: _outputs(model.encode_image(features)),
            input_signature=[tf.TensorSpec((None, *image_shape), tf.float32, name="features")],
        )
        image_shape = tuple(int(d) for d in backbone.network.input_shape[1:])
        image_kind = "pixels"

        def encode_image(images):
            return model.encode_image(backbone(images, training=False))
    image_spec = tf.TensorSpec((None, *image_shape), tf.float32)
    bow_spec = tf.TensorSpec((None, text_dim), tf.float32)
    archive.add_endpoint(
        "encode_image",
        lambda images: _outputs(encode_image(images)),
        input_signature=[tf.TensorSpec(image_spec.shape, tf.float32, name="images")],
    )
    if image_kind in ("pixels", "paths"):
        size = tuple(image_shape[:2])
        archive.add_endpoint(
            "encode_image_bytes",
            lambda image_bytes: _outputs(encode_image(_decode_for_model(image_bytes, size))),
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
    return _publish(archive, path)


def _publish(archive, base):
    """Writes `archive` as base/<next version>, atomically; prunes old versions; returns it."""
    base = os.path.abspath(base)
    legacy = os.path.exists(os.path.join(base, "saved_model.pb"))  # a plain, unversioned export
    os.makedirs(base, exist_ok=True)
    for name in os.listdir(base):  # what a crash left half-written: never served, never reused
        if name.startswith(".partial-"):
            shutil.rmtree(os.path.join(base, name))
    version = max(versions(base), default=0) + 1
    staging = os.path.join(base, f".partial-{version}")
    archive.write_out(staging, verbose=False)
    faults.point("saved_model_staged")  # a crash test's kill between writing and publishing
    if legacy:
        # Files of the old layout sit beside the versions; TF Serving wants only versions.
        # Move the new version out, swap the folders, move it back in.
        outside = os.path.join(os.path.dirname(base), f".saved_model.partial-{version}")
        os.replace(staging, outside)
        old = os.path.join(os.path.dirname(base), ".saved_model.legacy")
        if os.path.exists(old):
            shutil.rmtree(old)
        os.replace(base, old)
        os.makedirs(base)
        staging = outside
    final = os.path.join(base, str(version))
    os.replace(staging, final)
    if legacy:
        shutil.rmtree(old)
    for old_version in versions(base)[:-KEEP_VERSIONS]:
        shutil.rmtree(os.path.join(base, str(old_version)))
    return final
