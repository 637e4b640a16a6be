"""The DCMH-style baseline loss (Eq. D1-D3 in losses.dcmh_loss: the three terms of DCMH's
objective J, Jiang & Li, CVPR 2017) against NumPy brute force, and a check that codes trained on
it learn the classes (the earlier per-term means weighted the likelihood too weakly: on the
free codes below they separate the classes by 1.2 bits, J's sums by 3.4)."""

import numpy as np
import pytest
import tensorflow as tf

from daah_tf import losses


def numpy_dcmh(f, g, labels):
    """(nll, quantization, balance) of DCMH's J, each divided by the batch size."""
    batch, _ = f.shape
    nll = 0.0
    for i in range(batch):  # Eq. D1: -sum_ij [S_ij Theta_ij - log(1 + e^Theta_ij)]
        for j in range(batch):
            s = float(labels[i] @ labels[j] > 0)
            theta = 0.5 * float(f[i] @ g[j])
            nll -= s * theta - np.log1p(np.exp(theta))
    b = np.where(f + g >= 0, 1.0, -1.0)  # DCMH's B = sign(gamma (F + G))
    quantization = np.sum((b - f) ** 2) + np.sum((b - g) ** 2)  # Eq. D2
    balance = np.sum(f.sum(0) ** 2) + np.sum(g.sum(0) ** 2)  # Eq. D3: ||F 1||^2 + ||G 1||^2
    return nll / batch, quantization / batch, balance / batch


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dcmh_loss_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    f = rng.uniform(-1, 1, (6, 8)).astype(np.float32)
    g = rng.uniform(-1, 1, (6, 8)).astype(np.float32)
    labels = (rng.random((6, 4)) < 0.4).astype(np.float32)
    terms = losses.dcmh_loss(f, g, labels, quantization_weight=0.7, balance_weight=0.3)
    nll, quantization, balance = numpy_dcmh(f.astype(float), g.astype(float), labels)
    np.testing.assert_allclose(float(terms["nll"]), nll, rtol=1e-5)
    np.testing.assert_allclose(float(terms["quantization"]), quantization, rtol=1e-5)
    np.testing.assert_allclose(float(terms["balance"]), balance, rtol=1e-5)
    np.testing.assert_allclose(float(terms["total"]), nll + 0.7 * quantization + 0.3 * balance,
                               rtol=1e-5)


def test_dcmh_free_codes_learn_the_classes_instead_of_one_constant_code():
    """tanh codes optimised directly on the loss, 8 single-label classes (S is mostly 0, as on
    Wiki): the bits split the batch and the codes separate the classes."""
    rng = np.random.default_rng(0)
    classes, per_class, bits = 8, 8, 16
    labels = np.eye(classes, dtype=np.float32)[np.repeat(np.arange(classes), per_class)]
    f_param = tf.Variable(rng.normal(0, 0.1, (classes * per_class, bits)), dtype=tf.float32)
    g_param = tf.Variable(rng.normal(0, 0.1, (classes * per_class, bits)), dtype=tf.float32)
    optimizer = tf.keras.optimizers.Adam(0.01)
    for _ in range(300):
        with tf.GradientTape() as tape:
            loss = losses.dcmh_loss(tf.tanh(f_param), tf.tanh(g_param), labels)["total"]
        optimizer.apply_gradients(zip(tape.gradient(loss, [f_param, g_param]),
                                      [f_param, g_param], strict=True))
    f, g = np.sign(np.tanh(f_param.numpy())), np.sign(np.tanh(g_param.numpy()))
    assert np.abs(f.mean(0)).mean() < 0.5 and np.abs(g.mean(0)).mean() < 0.5  # not constant
    hamming = (bits - f @ g.T) / 2
    same = labels @ labels.T > 0
    assert hamming[same].mean() + 2 < hamming[~same].mean()


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
