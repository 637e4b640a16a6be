"""The DAAH building blocks: straight-through threshold, attentions, encoders, hash heads."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from _helpers import policy

from daah_tf.models import (
    SpatialAttention,
    VectorAttention,
)


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
