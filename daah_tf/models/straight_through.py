"""Hard threshold with a straight-through gradient (the attention mask Z of docs/design.md).

    Z = 1[P >= alpha]                      forward
    dL/dP = dL/dZ * 1[|P - alpha| <= 1]    backward (BinaryNet's estimator, arXiv 1602.02830)

The indicator has zero gradient almost everywhere, so without an estimator the attention player
would never learn. P is a softmax output in [0, 1] and alpha in (0, 1], so the window
|P - alpha| <= 1 always holds here; it is kept because it is what the estimator is, and because a
caller may threshold unnormalised scores.
"""

import tensorflow as tf

from daah_tf.config import MASK_ESTIMATORS


@tf.custom_gradient
def straight_through_threshold(probabilities, alpha):
    """Returns 1[probabilities >= alpha] with a straight-through gradient.

    Args:
        probabilities: float tensor of any shape, e.g. (B, H*W) or (B, d).
        alpha: scalar float tensor (or broadcastable to `probabilities`), the threshold.

    Returns:
        A tensor shaped and typed like `probabilities`, every entry exactly 0 or 1.
    """
    probabilities = tf.convert_to_tensor(probabilities)
    alpha = tf.cast(alpha, probabilities.dtype)
    mask = tf.cast(probabilities >= alpha, probabilities.dtype)

    def grad(upstream):
        window = tf.cast(tf.abs(probabilities - alpha) <= 1.0, upstream.dtype)
        # No gradient for alpha: it is a constant of the method (1/(H*W) or 1/d).
        return upstream * window, tf.zeros_like(alpha)

    return mask, grad


def standardized(logits):
    """(B, n) scores -> (B, n) scores with mean 0 and standard deviation 1 over the last axis
    (not in the paper; `--standardize_attention_scores`). The gradient flows through the mean
    and the deviation, so nothing the player learns can change the scale of the scores."""
    mean, variance = tf.nn.moments(logits, axes=[-1], keepdims=True)
    return (logits - mean) * tf.math.rsqrt(variance + 1e-6)


def attention_mask(logits, estimator="logit", standardize=False):
    """Z = 1[P >= 1/n] with P = softmax(logits) over the last axis (docs/design.md, attention G).

    Both estimators give the same forward mask; they differ in the gradient that reaches the
    logits:
      - "probability" (the literal reading): the straight-through window sits on P after the
        softmax. Its Jacobian scales with P, so the gradient mostly grows the logit scale, and
        a sharper softmax leaves fewer entries above 1/n: the mask shrinks as a side effect of
        the scale, not of the objective (measured: the text mask collapses to 1-5%).
      - "logit": the window sits on the margin s = log(n P) = M - logsumexp(M) + log n, which
        is >= 0 exactly when P >= 1/n, with a unit window |s| <= 1: each entry's gradient moves
        its own margin, whatever the scale.

    With `standardize`, P = softmax of the `standardized` scores: the softmax then has a fixed
    temperature, and the share of entries above 1/n depends on the shape of the scores only,
    not on their scale, which gradients through the softmax's normaliser can keep growing
    (measured without it: fashion-9k's text mask share falls from 29% at epoch 4 to 10% at
    epoch 40; with it, 32% at the end).

    Args:
        logits: (B, n) float32 attention scores M.
        estimator: "logit" or "probability".
        standardize: whether to standardize M over the n entries first.

    Returns:
        (B, n) float32 mask in {0, 1}.
    """
    if estimator not in MASK_ESTIMATORS:
        raise ValueError(f"mask estimator must be one of {MASK_ESTIMATORS}, got {estimator!r}")
    n = tf.cast(tf.shape(logits)[-1], logits.dtype)
    if standardize:
        logits = standardized(logits)
    if estimator == "probability":
        return straight_through_threshold(tf.nn.softmax(logits, axis=-1), 1.0 / n)
    return straight_through_threshold(tf.nn.log_softmax(logits, axis=-1) + tf.math.log(n), 0.0)
