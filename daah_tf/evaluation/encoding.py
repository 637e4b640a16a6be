"""A model's binary codes of pipeline batches (TensorFlow)."""

import numpy as np
import tensorflow as tf

from daah_tf.data.pipeline import make_pipeline
from daah_tf.losses import binary_codes


class CodeEncoder:
    """Encodes pipeline batches into +-1 int8 codes with one compiled function per model."""

    def __init__(self, model):
        self.model = model

        # Plain tensor code (nothing for autograph to convert); batch sizes vary (last batch).
        @tf.function(autograph=False, reduce_retracing=True)
        def encode(inputs):
            return (binary_codes(model.encode_image(inputs["image"])),
                    binary_codes(model.encode_text(inputs["text"])))

        self._encode = encode

    def encode_batches(self, batches):
        """Codes of evaluation batches ({"image", "text"}, no labels), in batch order:
        {"image": (n, q) int8, "text": (n, q) int8}."""
        images, texts = [], []
        for inputs in batches:
            image_codes, text_codes = self._encode(inputs)
            images.append(image_codes.numpy())
            texts.append(text_codes.numpy())
        return {"image": np.concatenate(images), "text": np.concatenate(texts)}

    def encode_split(self, data, index, batch_size, text_featurizer=None, image_size=None):
        """Codes of one split, in split order: {"image": (n, q) int8, "text": (n, q) int8}."""
        return self.encode_batches(make_pipeline(
            data, index, batch_size, training=False, text_featurizer=text_featurizer,
            image_size=image_size, with_labels=False))
