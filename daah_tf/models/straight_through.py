"""Hard threshold with a straight-through gradient (the attention mask Z of design.md).

    Z = 1[P >= alpha]                      forward
    dL/dP = dL/dZ * 1[|P - alpha| <= 1]    backward (BinaryNet's estimator, arXiv 1602.02830)

The indicator has zero gradient almost everywhere, so without an estimator the attention player
would never learn. P is a softmax output in [0, 1] and alpha in (0, 1], so the window
|P - alpha| <= 1 always holds here; it is kept because it is what the estimator is, and because a
caller may threshold unnormalised scores.
"""

import tensorflow as tf


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
