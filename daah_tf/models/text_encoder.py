"""The text feature-learning module E^T: bag-of-words -> two dense layers -> f^T in R^d."""

import keras


@keras.saving.register_keras_serializable(package="daah_tf")
class TextEncoder(keras.layers.Layer):
    """Text feature learning E^T: a bag-of-words vector through two ReLU dense layers.

    Args:
        units: sizes of the two dense layers; the second is d, the feature size that the
            text attention weighs.
        dropout: dropout rate after the first layer (training only).
        linear_path: add a linear map of the bag of words, f = MLP(x) + W x with W (V, d) and
            no bias (not in the paper). With a few hundred captions the MLP alone generalises
            far worse than a linear model on the same words (README "Results", coco-mini and
            fashion-9k at 400 training pairs); the linear term lets telling words reach the
            features directly.
        **kwargs: standard Layer arguments.

    Input: (B, V) bag-of-words (counts or 0/1). Output: (B, units[-1]); without the linear
    path the features are >= 0 (ReLU), with it they are real.

    Reference: Zhang, Lai, Feng, "Attention-aware Deep Adversarial Hashing for Cross-Modal
    Retrieval", ECCV 2018.
    """

    def __init__(self, units=(512, 256), dropout=0.0, linear_path=False, **kwargs):
        super().__init__(**kwargs)
        if len(units) != 2:
            raise ValueError(f"TextEncoder takes two layer sizes, got units={units!r}")
        self.units = tuple(int(u) for u in units)
        self.dropout = float(dropout)
        self.linear_path = bool(linear_path)

    def build(self, input_shape):
        self.hidden = keras.layers.Dense(self.units[0], activation="relu", name="fc1")
        self.hidden.build(tuple(input_shape))
        self.drop = keras.layers.Dropout(self.dropout)
        self.features = keras.layers.Dense(self.units[1], activation="relu", name="fc2")
        self.features.build((input_shape[0], self.units[0]))
        if self.linear_path:
            self.linear = keras.layers.Dense(self.units[1], use_bias=False, name="linear_path")
            self.linear.build(tuple(input_shape))

    def call(self, bag_of_words, training=False):
        words = keras.ops.cast(bag_of_words, self.compute_dtype)
        features = self.features(self.drop(self.hidden(words), training=training))
        if self.linear_path:
            features = features + self.linear(words)
        return features

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units[1])

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, dropout=self.dropout)
        if self.linear_path:  # written only when on: configs of earlier runs stay as they were
            config["linear_path"] = True
        return config
