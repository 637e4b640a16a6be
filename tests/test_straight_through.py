"""daah_tf/models/straight_through.py: the attention mask Z = 1[softmax(M) >= 1/n] and where its
straight-through gradient sits, against NumPy."""

# The DAAH building blocks: straight-through threshold, attentions, encoders, hash heads.

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from daah_tf.models import (
    straight_through_threshold,
)
from daah_tf.models.straight_through import attention_mask


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("estimator", ["logit", "probability"])
def test_forward_is_the_threshold_of_the_softmax(estimator):
    logits = np.random.default_rng(0).normal(size=(5, 9)).astype(np.float32) * 3
    mask = attention_mask(tf.constant(logits), estimator).numpy()
    expected = (_softmax(logits.astype(np.float64)) >= 1.0 / 9).astype(np.float32)
    np.testing.assert_array_equal(mask, expected)


def _mask_gradient(seed, shape, estimator):
    """(logits, upstream, d<upstream, Z>/d logits) for random logits of `shape`."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=shape).astype(np.float32)
    upstream = rng.normal(size=shape).astype(np.float32)
    x = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(x)
        mask = attention_mask(x, estimator)
    return logits, upstream, tape.gradient(mask, x, output_gradients=tf.constant(upstream)).numpy()


def test_logit_estimator_gradient_is_windowed_log_softmax_jacobian():
    logits, upstream, got = _mask_gradient(1, (3, 6), "logit")
    # s = log(n P); dZ/ds = 1[|s| <= 1]; ds_k/dM_j = delta_kj - P_j.
    p = _softmax(logits.astype(np.float64))
    margin = np.log(6 * p)
    g = upstream * (np.abs(margin) <= 1.0)
    expected = g - p * g.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_probability_estimator_gradient_goes_through_the_softmax_jacobian():
    logits, upstream, got = _mask_gradient(2, (2, 5), "probability")
    p = _softmax(logits.astype(np.float64))
    # Window |P - 1/n| <= 1 always holds; dP_k/dM_j = P_k (delta_kj - P_j).
    expected = p * upstream - p * (p * upstream).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_unknown_estimator_is_refused():
    with pytest.raises(ValueError, match="mask estimator"):
        attention_mask(tf.zeros((1, 3)), "soft")


def np_softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


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


@pytest.mark.parametrize("estimator", ["logit", "probability"])
def test_standardized_scores_give_the_threshold_of_the_standardized_softmax(estimator):
    logits = np.random.default_rng(3).normal(size=(4, 7)).astype(np.float32) * 5 + 2
    mask = attention_mask(tf.constant(logits), estimator, standardize=True).numpy()
    scores = logits.astype(np.float64)
    standard = (scores - scores.mean(-1, keepdims=True)) / scores.std(-1, keepdims=True)
    np.testing.assert_array_equal(mask, (_softmax(standard) >= 1.0 / 7).astype(np.float32))
    # Neither the scale nor the offset of the scores moves the mask.
    rescaled = attention_mask(tf.constant(logits * 40.0 - 3.0), estimator, standardize=True)
    np.testing.assert_array_equal(rescaled.numpy(), mask)


def test_standardized_scores_have_a_finite_gradient_even_when_all_equal():
    x = tf.constant(np.full((2, 5), 0.7, np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        mask = attention_mask(x, "logit", standardize=True)
    gradient = tape.gradient(mask, x, output_gradients=tf.ones_like(x))
    assert np.all(mask.numpy() == 1.0) and np.all(np.isfinite(gradient.numpy()))
