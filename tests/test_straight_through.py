"""daah_tf/models/straight_through.py: the attention mask Z = 1[softmax(M) >= 1/n] and where its
straight-through gradient sits, against NumPy."""

import numpy as np
import pytest
import tensorflow as tf

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
