"""The compiled DAAH model of a run's settings: what the trainer trains and a reader restores."""

import dataclasses

import keras

from daah_tf.config import RunConfig
from daah_tf.models import build_model

PRECISION_POLICIES = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def set_precision_policy(config: RunConfig):
    """The layers take their dtypes from the global policy when built: sets the run's."""
    keras.mixed_precision.set_global_policy(PRECISION_POLICIES[config.train.mixed_precision])


def training_model_config(config: RunConfig):
    """The ModelConfig of the network that trains: with a frozen backbone (on the automatic
    feature cache) its image encoder is `precomputed`, the backbone stays out of the model."""
    model = config.model
    if model.freeze_backbone and not config.data.feature_cache:
        return dataclasses.replace(model, image_backbone="precomputed", image_weights="none")
    return model


def build_compiled_model(config: RunConfig, image_shape, text_dim):
    model = build_model(training_model_config(config), image_shape, text_dim)
    model.compile(
        hash_optimizer=keras.optimizers.Adam(config.train.hash_learning_rate),
        attention_optimizer=keras.optimizers.Adam(config.train.attention_learning_rate),
        jit_compile=config.train.jit_compile,
        on_nonfinite=config.train.on_nonfinite,
    )
    return model
