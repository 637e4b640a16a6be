"""The run directory: what a run writes, checked before any training starts.

    DIR/flags.txt          effective flags, usable as --flagfile
    DIR/config.json        the RunConfig
    DIR/splits.json        the protocol split (query/database/train/validation indices)
    DIR/text_featurizer.json  the text vocabulary (raw-text datasets)
    DIR/checkpoints/       latest checkpoints, and best/ (model selection on validation)
    DIR/tensorboard/       train/ and validation/ event files
    DIR/saved_model/<v>/   the serving export, TF Serving's layout (daah_tf/export.py)
    DIR/metrics.json       the final retrieval metrics

The names are daah_tf.run's constants (`Run` reads a finished run back).
"""

import dataclasses
import math
import os
import shutil

import numpy as np

from daah_tf.atomic import (  # noqa: F401 (re-exported)
    atomic_write_json,
    atomic_write_text,
    remove_stale_temporaries,
)
from daah_tf.config import ABSENT_MEANS, RunConfig
from daah_tf.run import CONFIG_FILE, Run, load_run_config

# Room for what is not weights: event files, metrics, splits, the text vocabulary.
MIN_FREE_BYTES = 64 * 1024 * 1024


class RunDirectoryError(RuntimeError):
    """The run directory cannot be used (not writable, full, or holds another run)."""


def _variable_bytes(variables):
    return sum(math.prod(v.shape) * np.dtype(getattr(v.dtype, "name", v.dtype)).itemsize
               for v in variables)


def bytes_needed(model):
    """Disk a run of `model` (built and compiled) needs, in bytes, and what for.

    One checkpoint holds the model's weights and both players' optimizer variables (with Adam,
    two slots per weight), and one SavedModel version holds the weights again; on top of that
    MIN_FREE_BYTES for event files and the rest. Returns (total, description).
    """
    weights = _variable_bytes(model.weights)
    slots = _variable_bytes([v for optimizer in (model.hash_optimizer, model.attention_optimizer)
                             for v in optimizer.variables])
    total = 2 * weights + slots + MIN_FREE_BYTES
    mib = 2**20
    return total, (f"checkpoint {(weights + slots) / mib:.0f} MiB (weights {weights / mib:.0f} "
                   f"+ optimizer slots {slots / mib:.0f}), SavedModel {weights / mib:.0f} MiB, "
                   f"other files {MIN_FREE_BYTES / mib:.0f} MiB")


def _existing_ancestor(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def check_free_space(model_dir, needed=(MIN_FREE_BYTES, "")):
    """Raises RunDirectoryError unless the disk of `model_dir` (or of the nearest existing
    folder above it: nothing is created here) has `needed` = (bytes, what for) free."""
    required, what = needed
    free = shutil.disk_usage(_existing_ancestor(model_dir)).free
    if free < required:
        raise RunDirectoryError(
            f"--model_dir={model_dir}: only {free / 2**20:.0f} MiB free, the run needs about "
            f"{required / 2**20:.0f} MiB" + (f" ({what})" if what else "")
        )


def check_writable(model_dir):
    """Creates `model_dir` if needed and fails early if it cannot be written."""
    try:
        os.makedirs(model_dir, exist_ok=True)
        probe = os.path.join(model_dir, ".write-test")
        with open(probe, "w") as stream:
            stream.write("ok")
        os.remove(probe)
    except OSError as error:
        raise RunDirectoryError(
            f"--model_dir={model_dir} is not writable: {error.strerror or error}"
        ) from error


def _flag(name, value):
    """The command-line spelling of one setting: --name=value, or --name / --noname."""
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    return f"--{name}={value:g}" if isinstance(value, float) else f"--{name}={value}"


def _changed_default_hint(old, new):
    """For settings whose default changed after runs were saved (`ABSENT_MEANS`): the flags
    that resume an older run as it was trained, since its flags.txt predates them."""
    flags = [_flag(key, old[part][key]) for part, keys in ABSENT_MEANS.items() for key in keys
             if key in old.get(part, {}) and old[part][key] != new[part][key]]
    if not flags:
        return ""
    return (" A run made before these settings' defaults changed resumes with "
            + " ".join(flags) + " added.")


def _settings(config: RunConfig):
    """The parts of a config that must match for a run to be resumed (not epochs etc.); the
    weight average too: its variables are in the checkpoints or not."""
    raw = dataclasses.asdict(config)
    return {"data": raw["data"], "model": raw["model"],
            "train": {"weight_average_decay": raw["train"]["weight_average_decay"]}}


def holds_run(model_dir):
    """Whether `model_dir` holds a run (that `prepare` will resume or refuse); reads only."""
    return os.path.exists(os.path.join(model_dir, CONFIG_FILE))


def prepare(config: RunConfig, flags_text, needed=(MIN_FREE_BYTES, "")):
    """Checks and fills the run directory; returns True if it holds a run to resume.

    The free space (`needed`, from `bytes_needed`) is checked before anything is created. A
    directory holding a run with other data or model settings is refused rather than mixed.
    Temporary files of atomic writes a crash left behind are removed (nothing read them).
    """
    model_dir = config.train.model_dir
    check_free_space(model_dir, needed)
    check_writable(model_dir)
    run = Run(model_dir)
    resuming = holds_run(model_dir)
    remove_stale_temporaries(model_dir)
    if resuming:
        previous = load_run_config(model_dir)
        old, new = _settings(previous), _settings(config)
        if old != new:
            changed = sorted(
                f"{part}.{key}: {old[part][key]!r} -> {new[part][key]!r}"
                for part in old for key in old[part] if old[part][key] != new[part][key]
            )
            raise RunDirectoryError(
                f"--model_dir={model_dir} holds a run with other settings ({'; '.join(changed)}). "
                "Use another --model_dir, or the same flags to resume it."
                + _changed_default_hint(old, new)
            )
    atomic_write_text(run.flags_path, flags_text)
    atomic_write_text(run.config_path, config.to_json() + "\n")
    return resuming
