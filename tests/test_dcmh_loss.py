"""The DCMH-style baseline loss (Eq. D1-D3 in losses.dcmh_loss) against NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from daah_tf import losses


def numpy_dcmh(f, g, labels, quantization_weight, balance_weight):
    batch, bits = f.shape
    nll = 0.0
    for i in range(batch):
        for j in range(batch):
            s = float(labels[i] @ labels[j] > 0)
            theta = 0.5 * float(f[i] @ g[j])
            nll += np.log1p(np.exp(theta)) - s * theta
    nll /= batch * batch
    b = np.where(f + g >= 0, 1.0, -1.0)
    quantization = np.mean(np.sum((b - f) ** 2 + (b - g) ** 2, axis=1)) / bits
    balance = (np.sum(f.sum(0) ** 2) + np.sum(g.sum(0) ** 2)) / (batch * batch * bits)
    return nll + quantization_weight * quantization + balance_weight * balance


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dcmh_loss_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    f = rng.uniform(-1, 1, (6, 8)).astype(np.float32)
    g = rng.uniform(-1, 1, (6, 8)).astype(np.float32)
    labels = (rng.random((6, 4)) < 0.4).astype(np.float32)
    terms = losses.dcmh_loss(f, g, labels, quantization_weight=0.7, balance_weight=0.3)
    expected = numpy_dcmh(f.astype(float), g.astype(float), labels, 0.7, 0.3)
    np.testing.assert_allclose(float(terms["total"]), expected, rtol=1e-5)


def test_log_one_plus_exp_is_stable_and_exact():
    x = tf.constant([-1000.0, -20.0, -1.0, 0.0, 1.0, 20.0, 1000.0])
    value = losses.log_one_plus_exp(x).numpy()
    assert np.all(np.isfinite(value))
    np.testing.assert_allclose(value[1:-1], np.log1p(np.exp(x.numpy()[1:-1])), rtol=1e-6)
    assert value[-1] == 1000.0 and value[0] == 0.0
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(losses.log_one_plus_exp(x))
    assert np.all(np.isfinite(tape.gradient(y, x).numpy()))
