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


def test_a_run_saved_before_a_default_changed_is_refused_with_the_flags_that_resume_it(tmp_path):
    import dataclasses
    import json

    from daah_tf.config import ABSENT_MEANS, RunConfig, TrainConfig
    from daah_tf.run import Run
    from daah_tf.training import run_directory

    config = RunConfig(train=TrainConfig(model_dir=str(tmp_path / "run")))
    run_directory.prepare(config, "")
    saved = json.loads(config.to_json())  # as a run of before --text_linear_path wrote it
    for name in ABSENT_MEANS["model"]:
        del saved["model"][name]
    with open(Run(config.train.model_dir).config_path, "w", encoding="utf-8") as stream:
        json.dump(saved, stream)
    with pytest.raises(run_directory.RunDirectoryError) as error:
        run_directory.prepare(config, "")
    message = str(error.value)
    assert "model.text_linear_path: False -> True" in message
    assert ("resumes with --notext_linear_path --center_weight=0 --cnn_pool_last_block added"
            in message)
    older = dataclasses.replace(config, model=dataclasses.replace(
        config.model, text_linear_path=False, center_weight=0.0, cnn_pool_last_block=True))
    assert run_directory.prepare(older, "")  # the hint's flags resume it
