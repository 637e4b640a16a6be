"""The text hashing module D^T: one dense layer of q tanh units."""

import keras


@keras.saving.register_keras_serializable(package="daah_tf")
class TextHashHead(keras.layers.Layer):
    """Text hashing D^T: one dense layer, q units, tanh (computed in float32).

    Args:
        bits: q, the code length.
        **kwargs: standard Layer arguments.

    Input: (B, d) features. Output: (B, q) float32 codes in (-1, 1).

    Reference: Zhang, Lai, Feng, ECCV 2018.
    """

    def __init__(self, bits, **kwargs):
        super().__init__(**kwargs)
        self.bits = int(bits)

    def build(self, input_shape):
        self.code = keras.layers.Dense(self.bits, activation="tanh", dtype="float32", name="code")
        self.code.build(tuple(input_shape))

    def call(self, features, training=False):
        del training  # no dropout here; the argument keeps both heads' calls alike
        return self.code(features)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.bits)

    def get_config(self):
        config = super().get_config()
        config.update(bits=self.bits)
        return config
