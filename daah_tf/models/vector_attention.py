"""The attention module G over a feature vector: which of the d dimensions to attend."""

import keras
import tensorflow as tf

from daah_tf.models.straight_through import attention_mask


@keras.saving.register_keras_serializable(package="daah_tf")
class VectorAttention(keras.layers.Layer):
    """Attention G over dimensions: dense -> softmax over d -> Z = 1[P >= 1/d].

    attended f~ = Z * f and unattended f^ = (1 - Z) * f, elementwise, so f~ + f^ = f exactly.
    Works for text features and for image features given as vectors (e.g. SIFT bags of words).

    Args:
        detach_features: read the features through stop_gradient when scoring them (see
            `SpatialAttention`).
        estimator: where the threshold's straight-through gradient sits: "logit" (default) or
            "probability" (the literal reading); see `straight_through.attention_mask`.
        standardize_scores: standardize the scores over the d dimensions before the softmax
            (not in the paper; see `straight_through.attention_mask`).
        **kwargs: standard Layer arguments.

    Call: features (B, d) -> (attended (B, d), unattended (B, d), mask (B, d) in {0, 1}).

    Reference: Zhang, Lai, Feng, ECCV 2018, Sec. 3 (attention module).
    """

    def __init__(self, detach_features=True, estimator="logit", standardize_scores=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.detach_features = bool(detach_features)
        self.estimator = estimator
        self.standardize_scores = bool(standardize_scores)

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"VectorAttention needs (B, d) features, got shape {input_shape}; "
                "use SpatialAttention for (B, H, W, C) feature maps."
            )
        self.score = keras.layers.Dense(input_shape[-1], name="score")
        self.score.build(tuple(input_shape))

    def call(self, features):
        scored = tf.stop_gradient(features) if self.detach_features else features
        mask = attention_mask(tf.cast(self.score(scored), tf.float32), self.estimator,
                              self.standardize_scores)
        typed_mask = tf.cast(mask, features.dtype)
        return typed_mask * features, (1.0 - typed_mask) * features, mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape), tuple(input_shape), tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(detach_features=self.detach_features, estimator=self.estimator)
        if self.standardize_scores:  # written only when set: older configs keep their form
            config["standardize_scores"] = True
        return config
