"""The DAAH building blocks: straight-through threshold, attentions, encoders, hash heads."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from _helpers import policy

from daah_tf.models import (
    ImageEncoder,
    ImageHashHead,
    SpatialAttention,
    TextEncoder,
    TextHashHead,
    VectorAttention,
)

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
    pytest.param(lambda: TextEncoder(units=(8, 6), linear_path=True), (2, 10), (2, 6),
                 id="text-linear-path"),
    pytest.param(lambda: SpatialAttention(), (2, 4, 4, 3), (2, 4, 4, 3), id="spatial"),
    pytest.param(
        lambda: VectorAttention(detach_features=False), (2, 6), (2, 6), id="vector"
    ),
    pytest.param(lambda: SpatialAttention(standardize_scores=True), (2, 4, 4, 3), (2, 4, 4, 3),
                 id="spatial-standardized"),
    pytest.param(lambda: VectorAttention(standardize_scores=True), (2, 6), (2, 6),
                 id="vector-standardized"),
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


def test_encoders_compute_in_the_policy_dtype():
    with policy("mixed_bfloat16"):
        image = ImageEncoder(backbone="small_cnn", cnn_filters=(2,))
        text = TextEncoder(units=(4, 3))
        assert image(np.zeros((1, 8, 8, 3), np.float32)).dtype == tf.bfloat16
        assert text(np.zeros((1, 5), np.float32)).dtype == tf.bfloat16


def test_text_linear_path_adds_a_linear_map_of_the_words():
    """f = relu(relu(x W1 + b1) W2 + b2) + x W, against NumPy; without the path the layer has
    no such weight and its config does not name it (earlier runs' configs stay valid)."""
    rng = np.random.default_rng(3)
    words = rng.poisson(0.7, size=(5, 12)).astype(np.float32)
    encoder = TextEncoder(units=(8, 6), linear_path=True)
    features = encoder(words).numpy()
    w1, b1 = encoder.hidden.get_weights()
    w2, b2 = encoder.features.get_weights()
    (linear,) = encoder.linear.get_weights()
    assert linear.shape == (12, 6)
    expected = (np.maximum(np.maximum(words @ w1 + b1, 0) @ w2 + b2, 0) + words @ linear)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)
    assert encoder.get_config()["linear_path"] is True
    plain = TextEncoder(units=(8, 6))
    plain(words)
    assert "linear_path" not in plain.get_config() and len(plain.get_weights()) == 4
