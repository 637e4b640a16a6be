"""The DAAH building blocks: straight-through threshold, attentions, encoders, hash heads."""

from __future__ import annotations

import re

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from _helpers import policy

from daah_tf.config import ModelConfig
from daah_tf.models import (
    ImageEncoder,
    ImageHashHead,
    ImageWeightsUnavailableError,
    SpatialAttention,
    TextEncoder,
    TextHashHead,
    VectorAttention,
    build_model,
    factory,
    image_encoder,
    straight_through_threshold,
)

# ---------------------------------------------------------------------------------------------
# Helpers


def np_softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def assert_mask_matches(mask, probabilities, alpha):
    """mask == 1[P >= alpha], except where P is within rounding of alpha."""
    mask = np.asarray(mask)
    expected = (probabilities >= alpha).astype(np.float32)
    clear = np.abs(probabilities - alpha) > 1e-6 * alpha
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(mask[clear], expected[clear])


# ---------------------------------------------------------------------------------------------
# 1. Straight-through threshold


def test_straight_through_forward_is_exact_indicator():
    rng = np.random.default_rng(0)
    probabilities = np_softmax(rng.normal(size=(4, 9))).astype(np.float32)
    alpha = 1.0 / 9
    mask = straight_through_threshold(tf.constant(probabilities), alpha)
    assert mask.dtype == tf.float32 and mask.shape == (4, 9)
    assert set(np.unique(mask.numpy())) <= {0.0, 1.0}
    np.testing.assert_array_equal(mask.numpy(), (probabilities >= np.float32(alpha)).astype(float))
    # P == alpha counts as attended (>=).
    tie = straight_through_threshold(tf.constant([[0.25, 0.5, 0.1]]), 0.25).numpy()
    np.testing.assert_array_equal(tie, [[1.0, 1.0, 0.0]])


def test_straight_through_gradient_is_upstream_inside_window():
    rng = np.random.default_rng(1)
    probabilities = tf.Variable(np_softmax(rng.normal(size=(3, 8))).astype(np.float32))
    weights = tf.constant(rng.normal(size=(3, 8)).astype(np.float32))
    with tf.GradientTape() as tape:
        mask = straight_through_threshold(probabilities, 1.0 / 8)
        objective = tf.reduce_sum(weights * mask)
    gradient = tape.gradient(objective, probabilities)
    # Softmax outputs always lie in the window |P - alpha| <= 1: the gradient is the upstream.
    np.testing.assert_array_equal(gradient.numpy(), weights.numpy())


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "tf.function"])
def test_straight_through_gradient_is_zero_outside_window(traced):
    rng = np.random.default_rng(2)
    scores = (3.0 * rng.normal(size=(4, 10))).astype(np.float32)  # unnormalised
    alpha = np.float32(0.2)
    weights = rng.normal(size=(4, 10)).astype(np.float32)

    def forward_backward(scores):
        with tf.GradientTape() as tape:
            tape.watch(scores)
            mask = straight_through_threshold(scores, alpha)
            objective = tf.reduce_sum(weights * mask)
        return mask, tape.gradient(objective, scores)

    if traced:
        forward_backward = tf.function(forward_backward)
    mask, gradient = forward_backward(tf.constant(scores))
    inside = np.abs(scores - alpha) <= 1.0
    assert inside.any() and (~inside).any()
    np.testing.assert_array_equal(mask.numpy(), (scores >= alpha).astype(np.float32))
    np.testing.assert_array_equal(gradient.numpy(), np.where(inside, weights, 0.0))


def test_straight_through_keeps_dtype_and_gives_alpha_no_gradient():
    probabilities = tf.constant([[0.1, 0.6, 0.3]], tf.float16)
    alpha = tf.Variable(1.0 / 3)
    with tf.GradientTape() as tape:
        tape.watch(probabilities)
        mask = straight_through_threshold(probabilities, alpha)
        objective = tf.reduce_sum(mask * tf.constant([[1.0, 2.0, 3.0]], tf.float16))
    assert mask.dtype == tf.float16
    np.testing.assert_array_equal(mask.numpy(), [[0, 1, 0]])
    grad_p, grad_alpha = tape.gradient(objective, [probabilities, alpha])
    np.testing.assert_array_equal(grad_p.numpy(), [[1, 2, 3]])
    assert grad_alpha is None or float(grad_alpha) == 0.0


# ---------------------------------------------------------------------------------------------
# 2. Attention modules


def spatial_scores(layer, features):
    kernel, bias = (w.numpy().astype(np.float64) for w in layer.score.weights)
    logits = np.einsum("bhwc,c->bhw", features.astype(np.float64), kernel[0, 0, :, 0]) + bias[0]
    return logits.reshape(len(features), -1)


def vector_scores(layer, features):
    kernel, bias = (w.numpy().astype(np.float64) for w in layer.score.weights)
    return features.astype(np.float64) @ kernel + bias


ATTENTIONS = [
    pytest.param(SpatialAttention, (4, 4, 5, 3), spatial_scores, id="spatial"),
    pytest.param(VectorAttention, (4, 7), vector_scores, id="vector-text"),
    pytest.param(VectorAttention, (4, 128), vector_scores, id="vector-image"),
]


@pytest.mark.parametrize("cls, shape, scores", ATTENTIONS)
def test_attention_splits_features_exactly_by_the_threshold_mask(cls, shape, scores):
    rng = np.random.default_rng(3)
    features = rng.normal(size=shape).astype(np.float32)
    layer = cls()
    attended, unattended, mask = (x.numpy() for x in layer(features))
    assert attended.shape == unattended.shape == shape
    assert mask.shape == (shape[:-1] if cls is SpatialAttention else shape)
    assert list(layer.compute_output_shape(shape)) == [shape, shape, mask.shape]
    np.testing.assert_array_equal(attended + unattended, features)
    assert set(np.unique(mask)) <= {0.0, 1.0}
    # Recompute Z = 1[softmax(scores) >= 1/n] from the layer's own weights.
    probabilities = np_softmax(scores(layer, features))
    positions = probabilities.shape[1]
    assert_mask_matches(mask.reshape(len(features), -1), probabilities, 1.0 / positions)
    # The largest probability is never below the uniform level: something is always attended.
    assert np.all(mask.reshape(len(features), -1).sum(axis=1) >= 1)
    assert 0.0 < mask.mean() < 1.0
    # The mask is broadcast over channels (spatial) or applied elementwise (vector).
    channel_mask = mask[..., None] if cls is SpatialAttention else mask
    np.testing.assert_array_equal(attended, channel_mask * features)
    np.testing.assert_array_equal(unattended, (1.0 - channel_mask) * features)


@pytest.mark.parametrize("cls, shape, scores", ATTENTIONS)
def test_attention_gradients_reach_scores_but_not_features_through_the_mask(cls, shape, scores):
    del scores
    rng = np.random.default_rng(4)
    features = tf.Variable(rng.normal(size=shape).astype(np.float32))
    w_attended = tf.constant(rng.normal(size=shape).astype(np.float32))
    w_unattended = tf.constant(rng.normal(size=shape).astype(np.float32))
    detached = cls(detach_features=True)
    detached.build(shape)
    attached = cls(detach_features=False)
    attached.build(shape)
    attached.set_weights(detached.get_weights())

    def gradients(layer):
        with tf.GradientTape() as tape:
            attended, unattended, mask = layer(features)
            objective = tf.reduce_sum(w_attended * attended + w_unattended * unattended)
        return mask.numpy(), tape.gradient(objective, [features, *layer.trainable_variables])

    mask, (grad_features, *grad_scores) = gradients(detached)
    # The score kernel learns (through the straight-through estimator).
    kernel_gradient = grad_scores[0].numpy()
    assert np.all(np.isfinite(kernel_gradient)) and np.any(kernel_gradient != 0)
    # With detached features, d objective / d features is only the multiplication's part.
    channel_mask = mask[..., None] if cls is SpatialAttention else mask
    only_product = channel_mask * w_attended.numpy() + (1.0 - channel_mask) * w_unattended.numpy()
    np.testing.assert_allclose(grad_features.numpy(), only_product, rtol=1e-6, atol=1e-7)
    # Without detaching, the mask path adds a gradient into the features.
    mask_attached, (grad_attached, *_) = gradients(attached)
    np.testing.assert_array_equal(mask_attached, mask)
    assert np.max(np.abs(grad_attached.numpy() - only_product)) > 1e-4


def test_attention_rejects_the_wrong_rank():
    with pytest.raises(ValueError, match="VectorAttention"):
        SpatialAttention().build((None, 8))
    with pytest.raises(ValueError, match="SpatialAttention"):
        VectorAttention().build((None, 2, 2, 3))


def test_attention_mask_stays_float32_under_mixed_precision():
    with policy("mixed_bfloat16"):
        layer = SpatialAttention()
        features = tf.random.normal((2, 3, 3, 4))
        attended, unattended, mask = layer(features)
    assert mask.dtype == tf.float32
    assert attended.dtype == unattended.dtype == tf.bfloat16
    assert set(np.unique(mask.numpy())) <= {0.0, 1.0}


def _tiny_config(**overrides):
    values = dict(bits=4, cnn_filters=(4,), image_hidden_units=(4, 4), text_units=(6, 5))
    values.update(overrides)
    return ModelConfig(**values)


@pytest.mark.parametrize(
    "backbone, image_shape, expected",
    [
        ("small_cnn", (8, 8, 3), SpatialAttention),
        ("precomputed", (2, 2, 6), SpatialAttention),
        ("precomputed", (128,), VectorAttention),
    ],
)
def test_factory_picks_attention_by_feature_rank(backbone, image_shape, expected):
    model = build_model(_tiny_config(image_backbone=backbone), image_shape, text_dim=9)
    assert type(model.image_attention) is expected
    assert type(model.text_attention) is VectorAttention
    images = np.random.default_rng(5).uniform(0, 1, size=(3, *image_shape)).astype(np.float32)
    mask = model.image_mask(images).numpy()
    features_shape = model.image_encoder.compute_output_shape((3, *image_shape))
    assert mask.shape == tuple(features_shape[:-1] if len(features_shape) == 4 else features_shape)
    assert model.encode_image(images).shape == (3, 4)
    assert type(factory.attention_for((None, 4, 4, 2))) is SpatialAttention
    assert type(factory.attention_for((None, 16))) is VectorAttention


def test_factory_without_attention_and_unknown_attention():
    model = build_model(_tiny_config(attention="none"), (8, 8, 3), text_dim=9)
    assert model.image_attention is None and model.text_attention is None
    assert model.attention_variables == []
    with pytest.raises(ValueError, match="attention"):
        build_model(_tiny_config(attention="soft"), (8, 8, 3), text_dim=9)


# ---------------------------------------------------------------------------------------------
# 3. Every layer: config round trip and output shapes


LAYERS = [
    pytest.param(
        lambda: ImageEncoder(backbone="small_cnn", cnn_filters=(4, 8)), (2, 16, 16, 3),
        (2, 4, 4, 8), id="image-small_cnn",
    ),
    pytest.param(
        lambda: ImageEncoder(backbone="precomputed"), (2, 3, 3, 5), (2, 3, 3, 5),
        id="image-precomputed-4d",
    ),
    pytest.param(
        lambda: ImageEncoder(backbone="precomputed"), (2, 128), (2, 128),
        id="image-precomputed-2d",
    ),
    pytest.param(lambda: TextEncoder(units=(8, 6), dropout=0.2), (2, 10), (2, 6), id="text"),
    pytest.param(lambda: SpatialAttention(), (2, 4, 4, 3), (2, 4, 4, 3), id="spatial"),
    pytest.param(
        lambda: VectorAttention(detach_features=False), (2, 6), (2, 6), id="vector"
    ),
    pytest.param(
        lambda: ImageHashHead(4, hidden_units=(8, 6), dropout=0.1), (2, 3, 3, 5), (2, 4),
        id="image-head-4d",
    ),
    pytest.param(
        lambda: ImageHashHead(4, hidden_units=(8, 6)), (2, 128), (2, 4), id="image-head-2d"
    ),
    pytest.param(lambda: TextHashHead(5), (2, 6), (2, 5), id="text-head"),
]


def _first(outputs):
    return outputs[0] if isinstance(outputs, (tuple, list)) else outputs


def _first_shape(shapes):
    return shapes[0] if shapes and isinstance(shapes[0], (tuple, list)) else shapes


@pytest.mark.parametrize("make, input_shape, output_shape", LAYERS)
def test_layer_config_round_trip_and_output_shape(make, input_shape, output_shape):
    layer = make()
    inputs = np.random.default_rng(6).uniform(0, 2, size=input_shape).astype(np.float32)
    outputs = layer(inputs)
    assert tuple(_first(outputs).shape) == output_shape
    assert tuple(_first_shape(layer.compute_output_shape((None, *input_shape[1:])))) == (
        None,
        *output_shape[1:],
    )
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    # Through Keras' registry too (what a .keras file uses).
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is type(layer) and revived.get_config() == config
    clone.build(input_shape)
    clone.set_weights(layer.get_weights())
    pairs = zip(tf.nest.flatten(outputs), tf.nest.flatten(clone(inputs)), strict=True)
    for original, copy in pairs:
        assert copy.shape == original.shape
        np.testing.assert_array_equal(copy.numpy(), original.numpy())


def test_precomputed_image_encoder_is_identity():
    features = np.random.default_rng(7).normal(size=(3, 128)).astype(np.float32)
    np.testing.assert_array_equal(ImageEncoder(backbone="precomputed")(features), features)


def test_layers_reject_bad_arguments():
    with pytest.raises(ValueError, match="backbone"):
        ImageEncoder(backbone="resnet")
    with pytest.raises(ValueError, match="two"):
        TextEncoder(units=(8,))
    with pytest.raises(ValueError, match="two"):
        ImageHashHead(4, hidden_units=(8, 8, 8))


@pytest.mark.parametrize("policy_name", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize(
    "make, input_shape",
    [
        (lambda: ImageHashHead(6, hidden_units=(8, 8), dropout=0.2), (5, 2, 2, 4)),
        (lambda: TextHashHead(6), (5, 7)),
    ],
    ids=["image-head", "text-head"],
)
def test_hash_heads_give_float32_codes_in_open_interval(policy_name, make, input_shape):
    features = np.random.default_rng(8).normal(size=input_shape).astype(np.float32)
    with policy(policy_name):
        head = make()
        assert head.compute_dtype == ("bfloat16" if policy_name == "mixed_bfloat16" else "float32")
        for training in (False, True):
            codes = head(tf.cast(features, head.compute_dtype), training=training)
            assert codes.dtype == tf.float32
            assert codes.shape == (5, 6)
            values = codes.numpy()
            assert np.all(values > -1.0) and np.all(values < 1.0)
            assert np.all(np.isfinite(values))
    assert keras.config.dtype_policy().name == "float32"


def test_image_hash_head_dropout_only_in_training():
    head = ImageHashHead(4, hidden_units=(16, 16), dropout=0.5)
    features = np.random.default_rng(9).normal(size=(3, 8)).astype(np.float32)
    np.testing.assert_array_equal(head(features), head(features))
    assert not np.array_equal(head(features, training=True), head(features))


def test_encoders_compute_in_the_policy_dtype():
    with policy("mixed_bfloat16"):
        image = ImageEncoder(backbone="small_cnn", cnn_filters=(2,))
        text = TextEncoder(units=(4, 3))
        assert image(np.zeros((1, 8, 8, 3), np.float32)).dtype == tf.bfloat16
        assert text(np.zeros((1, 5), np.float32)).dtype == tf.bfloat16


# ---------------------------------------------------------------------------------------------
# VGG19 (20M parameters: few tests, at the smallest size VGG19 takes, 32x32)


def test_vgg19_random_weights_build_at_32x32():
    encoder = ImageEncoder(backbone="vgg19", weights="none")
    encoder.build((None, 32, 32, 3))
    assert tuple(encoder.compute_output_shape((None, 32, 32, 3))) == (None, 1, 1, 512)
    images = np.random.default_rng(10).uniform(0, 255, size=(2, 32, 32, 3)).astype(np.float32)
    features = encoder(images)
    assert features.shape == (2, 1, 1, 512)
    assert np.all(np.isfinite(features.numpy()))


def test_vgg19_imagenet_weights_offline_raise_a_clear_error(monkeypatch):
    def failed_fetch(*args, **kwargs):
        raise Exception(  # what keras' get_file raises
            "URL fetch failure on https://storage.googleapis.com/...: None -- "
            "[Errno -3] Temporary failure in name resolution"
        )

    from keras.src.utils import file_utils

    monkeypatch.setattr(file_utils, "get_file", failed_fetch)
    monkeypatch.setattr(keras.utils, "get_file", failed_fetch)
    encoder = ImageEncoder(backbone="vgg19", weights="imagenet")
    with pytest.raises(ImageWeightsUnavailableError) as error:
        encoder.build((None, 32, 32, 3))
    message = str(error.value)
    assert "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert "--image_weights" in message
    assert "Temporary failure in name resolution" in message
    assert isinstance(error.value.__cause__, Exception)


def test_vgg19_missing_weights_file(tmp_path):
    path = str(tmp_path / "nowhere" / image_encoder.VGG19_NOTOP_FILE)
    encoder = ImageEncoder(backbone="vgg19", weights=path)
    with pytest.raises(FileNotFoundError, match=re.escape(path)):
        encoder.build((None, 32, 32, 3))


def test_vgg19_from_config_never_fetches_weights_again():
    config = ImageEncoder(backbone="vgg19", weights="imagenet").get_config()
    assert config["weights"] == "imagenet"
    assert ImageEncoder.from_config(config).get_config()["weights"] == "none"


def test_vgg19_local_weights_files_load(tmp_path):
    reference = keras.applications.VGG19(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    # The Keras 3 format, and the legacy HDF5 layout of the file Keras downloads.
    native = tmp_path / "vgg19_notop.weights.h5"
    reference.save_weights(native)
    legacy = tmp_path / image_encoder.VGG19_NOTOP_FILE
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(legacy, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, reference)
    images = np.random.default_rng(11).uniform(0, 255, size=(2, 32, 32, 3)).astype(np.float32)
    expected = reference(keras.applications.vgg19.preprocess_input(images.copy())).numpy()
    for path in (native, legacy):
        encoder = ImageEncoder(backbone="vgg19", weights=str(path))
        encoder.build((None, 32, 32, 3))
        for loaded, saved in zip(encoder.network.weights, reference.weights, strict=True):
            np.testing.assert_array_equal(loaded.numpy(), saved.numpy())
        np.testing.assert_array_equal(encoder(images).numpy(), expected)
