"""Crash safety and hostile conditions: kill -9 and resume, unreadable checkpoints, NaN/Inf,
unwritable or full run directories, contradicting flags, atomic writes."""

import numpy as np
import pytest


def test_full_disk_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    import shutil

    import keras

    from daah_tf.config import ModelConfig, RunConfig, TrainConfig
    from daah_tf.models import build_model
    from daah_tf.training import run_directory

    model = build_model(ModelConfig(bits=8, cnn_filters=(4, 8), image_hidden_units=(16, 16),
                                    text_units=(16, 8)), (16, 16, 3), 30)
    model.compile(hash_optimizer=keras.optimizers.Adam(), attention_optimizer="adam")
    needed, what = run_directory.bytes_needed(model)
    weights = sum(int(np.prod(v.shape)) * 4 for v in model.weights)  # float32
    trainable = sum(int(np.prod(v.shape)) * 4 for v in model.trainable_weights)
    # a checkpoint (weights + Adam's two slots per trainable weight) and a SavedModel
    assert needed >= 2 * weights + 2 * trainable + run_directory.MIN_FREE_BYTES
    assert needed < 2 * weights + 2 * trainable + run_directory.MIN_FREE_BYTES + 1024
    assert "checkpoint" in what and "SavedModel" in what
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(10**12, 10**12 - needed + 1,
                                                              needed - 1))
    model_dir = tmp_path / "new" / "run"
    config = RunConfig(train=TrainConfig(model_dir=str(model_dir)))
    with pytest.raises(run_directory.RunDirectoryError, match="MiB free, the run needs"):
        run_directory.prepare(config, "", (needed, what))
    assert not (tmp_path / "new").exists()  # refused before creating anything
