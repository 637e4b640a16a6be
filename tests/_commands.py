"""Running the train command in a subprocess and reading checkpoints back, shared by the tests
of the command (test_train), of checkpoints and of the non-finite monitor."""

import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "flags", "smoke.cfg")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def train_command(model_dir, *extra):
    """argv of `python -m daah_tf.train` on the smoke flagfile into model_dir, quiet."""
    return [sys.executable, "-m", "daah_tf.train", f"--flagfile={SMOKE}",
            f"--model_dir={model_dir}", "--verbose=0", *extra]


def run(command, timeout=600):
    """Runs argv from the repository root; returns the CompletedProcess (text output)."""
    return subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def numeric_checkpoint(path):
    """{variable name: ndarray} of every numeric tensor in the TF checkpoint at path."""
    import tensorflow as tf  # here, so that importing this module stays cheap

    reader = tf.train.load_checkpoint(path)
    values = {}
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype != object:
            values[name] = value
    return values
