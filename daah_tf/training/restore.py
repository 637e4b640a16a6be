"""Rebuilds a trained model from its run directory (for evaluation, search, tests)."""

import json
import os

from daah_tf.config import RunConfig
from daah_tf.data.text_featurizer import TextFeaturizer

INPUTS_FILE = "inputs.json"


def inputs_description(data, image_shape, text_dim):
    """What the model takes, as written to DIR/inputs.json."""
    return {"image_kind": data.image_kind, "text_kind": data.text_kind,
            "image_shape": list(image_shape), "text_dim": int(text_dim)}


def load_run_config(model_dir):
    path = os.path.join(model_dir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{model_dir} is not a run directory: {path} is missing")
    with open(path, encoding="utf-8") as stream:
        return RunConfig.from_json(stream.read())


def restore_model(model_dir, checkpoint="best"):
    """The model of a run with the weights of its best (or latest) checkpoint.

    Returns:
        (model, text_featurizer or None, RunConfig, inputs description dict).
    """
    import keras

    from daah_tf.training.checkpoints import RunCheckpoints
    from daah_tf.training.trainer import PRECISION_POLICIES, build_compiled_model

    config = load_run_config(model_dir)
    # The layers take their dtypes from the global policy when built: use the run's.
    keras.mixed_precision.set_global_policy(PRECISION_POLICIES[config.train.mixed_precision])
    with open(os.path.join(model_dir, INPUTS_FILE), encoding="utf-8") as stream:
        inputs = json.load(stream)
    featurizer = None
    if inputs["text_kind"] == "raw":
        featurizer = TextFeaturizer.load(model_dir)
    model = build_compiled_model(config, tuple(inputs["image_shape"]), inputs["text_dim"])
    checkpoints = RunCheckpoints(model, model_dir, config.train.keep_checkpoints)
    path = checkpoints.restore_best() if checkpoint == "best" else None
    if path is None and checkpoints.restore_latest() is None:
        raise FileNotFoundError(f"{model_dir} holds no checkpoint to restore")
    return model, featurizer, config, inputs
