"""The run directory: what a run writes, checked before any training starts.

    DIR/flags.txt          effective flags, usable as --flagfile
    DIR/config.json        the RunConfig
    DIR/splits.json        the protocol split (query/database/train/validation indices)
    DIR/text_featurizer.json  the text vocabulary (raw-text datasets)
    DIR/checkpoints/       latest checkpoints, and best/ (model selection on validation)
    DIR/tensorboard/       train/ and validation/ event files
    DIR/saved_model/       the serving export
    DIR/metrics.json       the final retrieval metrics
"""

import dataclasses
import os
import shutil

from daah_tf.atomic import atomic_write_json, atomic_write_text  # noqa: F401 (re-exported)
from daah_tf.config import RunConfig

# A checkpoint of the default model is a few MB; VGG19 with fc6/fc7 heads is about 1.5 GB with
# both optimizers' slots. Refuse to start without room for at least this much.
MIN_FREE_BYTES = 64 * 1024 * 1024


class RunDirectoryError(RuntimeError):
    """The run directory cannot be used (not writable, full, or holds another run)."""


def check_writable(model_dir, min_free_bytes=MIN_FREE_BYTES):
    """Creates `model_dir` if needed and fails early if it cannot hold a checkpoint."""
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
    free = shutil.disk_usage(model_dir).free
    if free < min_free_bytes:
        raise RunDirectoryError(
            f"--model_dir={model_dir}: only {free / 2**20:.0f} MiB free, a checkpoint needs "
            f"about {min_free_bytes / 2**20:.0f} MiB"
        )


def _settings(config: RunConfig):
    """The parts of a config that must match for a run to be resumed (not epochs etc.)."""
    raw = dataclasses.asdict(config)
    return {"data": raw["data"], "model": raw["model"]}


def prepare(config: RunConfig, flags_text):
    """Checks and fills the run directory; returns True if it holds a run to resume.

    A directory holding a run with other data or model settings is refused rather than mixed.
    """
    model_dir = config.train.model_dir
    check_writable(model_dir)
    config_path = os.path.join(model_dir, "config.json")
    resuming = os.path.exists(config_path)
    if resuming:
        with open(config_path, encoding="utf-8") as stream:
            previous = RunConfig.from_json(stream.read())
        old, new = _settings(previous), _settings(config)
        if old != new:
            changed = sorted(
                f"{part}.{key}: {old[part][key]!r} -> {new[part][key]!r}"
                for part in old for key in old[part] if old[part][key] != new[part][key]
            )
            raise RunDirectoryError(
                f"--model_dir={model_dir} holds a run with other settings ({'; '.join(changed)}). "
                "Use another --model_dir, or the same flags to resume it."
            )
    atomic_write_text(os.path.join(model_dir, "flags.txt"), flags_text)
    atomic_write_text(config_path, config.to_json() + "\n")
    return resuming
