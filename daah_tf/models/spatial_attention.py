"""The attention module G over a feature map: which of the H*W positions to attend."""

import keras
import tensorflow as tf

from daah_tf.models.straight_through import attention_mask


@keras.saving.register_keras_serializable(package="daah_tf")
class SpatialAttention(keras.layers.Layer):
    """Attention G over positions: 1x1 conv -> softmax over H*W -> Z = 1[P >= 1/(H*W)].

    Positions scoring above the uniform level 1/(H*W) are attended; the mask is broadcast over
    channels: attended f~ = Z * f, unattended f^ = (1 - Z) * f, so f~ + f^ = f exactly.

    Args:
        detach_features: read the features through stop_gradient when scoring them, so that the
            attention never sends gradient into the encoder, which belongs to the other player.
            The mask multiplies the (not detached) features, so the encoder still learns from
            the attended and unattended codes.
        estimator: where the threshold's straight-through gradient sits: "logit" (default) or
            "probability" (the literal reading); see `straight_through.attention_mask`.
        standardize_scores: standardize the scores over the positions before the softmax
            (not in the paper; see `straight_through.attention_mask`).
        **kwargs: standard Layer arguments.

    Call: features (B, H, W, C) -> (attended (B, H, W, C), unattended (B, H, W, C),
    mask (B, H, W) in {0, 1}).

    Reference: Zhang, Lai, Feng, ECCV 2018, Sec. 3 (attention module); the threshold's gradient
    is a straight-through estimator (see `straight_through_threshold`).
    """

    def __init__(self, detach_features=True, estimator="logit", standardize_scores=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.detach_features = bool(detach_features)
        self.estimator = estimator
        self.standardize_scores = bool(standardize_scores)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"SpatialAttention needs (B, H, W, C) feature maps, got shape {input_shape}; "
                "use VectorAttention for (B, d) features."
            )
        self.score = keras.layers.Conv2D(1, 1, name="score")
        self.score.build(tuple(input_shape))

    def call(self, features):
        scored = tf.stop_gradient(features) if self.detach_features else features
        logits = tf.cast(self.score(scored)[..., 0], tf.float32)  # (B, H, W); softmax in fp32
        shape = tf.shape(logits)
        positions = shape[1] * shape[2]
        flat_mask = attention_mask(tf.reshape(logits, (shape[0], positions)), self.estimator,
                                   self.standardize_scores)
        mask = tf.reshape(flat_mask, shape)
        channel_mask = tf.cast(mask[..., None], features.dtype)
        return channel_mask * features, (1.0 - channel_mask) * features, mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape), tuple(input_shape), tuple(input_shape[:3])

    def get_config(self):
        config = super().get_config()
        config.update(detach_features=self.detach_features, estimator=self.estimator)
        if self.standardize_scores:  # written only when set: older configs keep their form
            config["standardize_scores"] = True
        return config
