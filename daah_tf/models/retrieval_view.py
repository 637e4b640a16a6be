"""What the retrieval codes H = D(.) read, given the features f and the attended Z * f
(`--retrieval_view`; docs/design.md, "What the retrieval codes read").

The unattended codes H^ of L_adv always read (1 - Z) * f, whatever the view.
"""

import tensorflow as tf


def retrieval_features(view, features, attended, gate=None):
    """The input of the hash head D for the retrieval codes.

    Args:
        view: "attended" Z * f (the paper's); "gated" Z * f + sigmoid(g) (1 - Z) * f;
            "whole" f; "residual" (1 + Z) * f.
        features: f, (B, H, W, C) or (B, d).
        attended: Z * f, shaped like `features`.
        gate: g, the modality's scalar gate variable (the hashing player's); "gated" only.

    Returns:
        A tensor shaped and typed like `features`.
    """
    if view == "gated":
        gate = tf.cast(tf.sigmoid(gate), features.dtype)
        return attended + gate * (features - attended)
    if view == "whole":
        # Attention as an adversarial eraser: the retrieval codes read every feature, the mask
        # only decides what the unattended view (L_adv) loses.
        return features
    if view == "residual":
        # Residual attention, (1 + Z) * f: attended features are emphasised, none is lost.
        return features + attended
    return attended
