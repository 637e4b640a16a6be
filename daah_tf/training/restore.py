"""Rebuilds a trained model from its settings and restores a checkpoint's weights into it.

`daah_tf.run.Run.restore` is the way in (evaluation, search, tools, tests): it reads the settings
from the run directory and turns a checkpoint that does not fit into a RunError.
"""

from daah_tf.training.checkpoints import RunCheckpoints
from daah_tf.training.compiled_model import build_compiled_model, set_precision_policy


def rebuild_model(config, inputs, model_dir, checkpoint="best"):
    """The model of a run with the weights of its best (or latest) checkpoint.

    Args:
        config: the run's RunConfig (DIR/config.json).
        inputs: the run's inputs description (DIR/inputs.json: image_shape, text_dim, ...).
        model_dir: the run directory, whose checkpoints are read.
        checkpoint: "best" (falls back to the latest when there is none) or "latest".

    Returns:
        The compiled model, its weights restored.
    """
    # The layers take their dtypes from the global policy when built: use the run's.
    set_precision_policy(config)
    model = build_compiled_model(config, tuple(inputs["image_shape"]), inputs["text_dim"])
    checkpoints = RunCheckpoints(model, model_dir, config.train.keep_checkpoints)
    path = checkpoints.restore_best() if checkpoint == "best" else None
    if path is None and checkpoints.restore_latest() is None:
        raise FileNotFoundError(f"{model_dir} holds no checkpoint to restore")
    return model
