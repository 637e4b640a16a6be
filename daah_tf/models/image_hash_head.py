"""The image hashing module D^I: features -> fc6/fc7-shaped layers -> q tanh units."""

import keras

from daah_tf.config import IMAGE_HEAD_POOLINGS as POOLINGS


@keras.saving.register_keras_serializable(package="daah_tf")
class ImageHashHead(keras.layers.Layer):
    """Image hashing D^I: flatten -> two ReLU dense layers (VGG fc6/fc7) -> q units, tanh.

    Args:
        bits: q, the code length.
        hidden_units: sizes of the two hidden layers (VGG: 4096, 4096; smaller on a CPU).
        dropout: dropout rate after each hidden layer (training only), as in VGG's fc6/fc7.
        pooling: how a (B, H, W, C) map enters fc6: "flatten" (VGG's fc6, H*W*C inputs) or
            "average" (the mean over the H*W positions, C inputs; masked positions count as
            zeros, so the code still depends on the mask). Vectors are used as they are.
        **kwargs: standard Layer arguments.

    Input: (B, H, W, C) feature map or (B, d) vector. Output: (B, q) float32 codes in (-1, 1).
    The code layer always computes in float32, so mixed precision never rounds the codes.

    Reference: Zhang, Lai, Feng, ECCV 2018; Simonyan & Zisserman, arXiv 1409.1556 (fc6/fc7).
    """

    def __init__(self, bits, hidden_units=(4096, 4096), dropout=0.0, pooling="flatten",
                 **kwargs):
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        if len(hidden_units) != 2:
            raise ValueError(f"ImageHashHead takes two hidden sizes, got {hidden_units!r}")
        self.bits = int(bits)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.dropout = float(dropout)

    def build(self, input_shape):
        self.average = self.pooling == "average" and len(input_shape) == 4
        flat = 1
        for size in (input_shape[-1:] if self.average else input_shape[1:]):
            flat *= int(size)
        self.flatten = keras.layers.Flatten()
        self.fc6 = keras.layers.Dense(self.hidden_units[0], activation="relu", name="fc6")
        self.fc6.build((input_shape[0], flat))
        self.fc7 = keras.layers.Dense(self.hidden_units[1], activation="relu", name="fc7")
        self.fc7.build((input_shape[0], self.hidden_units[0]))
        self.drop = keras.layers.Dropout(self.dropout)
        self.code = keras.layers.Dense(self.bits, activation="tanh", dtype="float32", name="code")
        self.code.build((input_shape[0], self.hidden_units[1]))

    def call(self, features, training=False):
        pooled = keras.ops.mean(features, axis=(1, 2)) if self.average else self.flatten(features)
        hidden = self.drop(self.fc6(pooled), training=training)
        hidden = self.drop(self.fc7(hidden), training=training)
        return self.code(hidden)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.bits)

    def get_config(self):
        config = super().get_config()
        config.update(bits=self.bits, hidden_units=self.hidden_units, dropout=self.dropout,
                      pooling=self.pooling)
        return config
