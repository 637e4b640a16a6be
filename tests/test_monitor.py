"""training/monitor.py: NaN/Inf batches under each --on_nonfinite policy."""

import json
import os

import numpy as np
import pytest
from _commands import numeric_checkpoint


def _nan_run(model_dir, policy, epochs, monkeypatch):
    """Trains on synthetic data through the library entry point, in this process; a resumed run
    (first epoch >= 1) gets a NaN in one row of every training batch's bags of words, so the
    hash loss of that row goes NaN. Returns (printed lines, the NonFiniteTrainingError or
    None)."""
    import tensorflow as tf

    from daah_tf.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from daah_tf.data import pipeline
    from daah_tf.training import trainer
    from daah_tf.training.monitor import NonFiniteTrainingError

    real = pipeline.make_pipeline

    def poisoned(data, split_index, batch_size, **kwargs):
        dataset = real(data, split_index, batch_size, **kwargs)
        if not kwargs.get("training") or kwargs.get("first_epoch", 0) < 1:
            return dataset

        def poison(inputs, labels):
            text = inputs["text"]
            bad = tf.concat([tf.fill([1, tf.shape(text)[1]], float("nan")), text[1:]], 0)
            return dict(inputs, text=bad), labels

        return dataset.map(poison)

    monkeypatch.setattr(trainer, "make_pipeline", poisoned)
    config = RunConfig(
        data=DataConfig(synthetic_pairs=240, synthetic_classes=4, image_size=16, batch_size=32),
        model=ModelConfig(bits=16, cnn_filters=(4, 8), image_hidden_units=(16, 16),
                          text_units=(16, 16)),
        train=TrainConfig(model_dir=str(model_dir), epochs=epochs, max_steps_per_epoch=3,
                          on_nonfinite=policy, verbose=0))
    lines = []
    try:
        trainer.train_and_evaluate(config, "", print_fn=lines.append)
    except NonFiniteTrainingError as error:
        return lines, error
    finally:
        monkeypatch.undo()
    return lines, None


@pytest.fixture(scope="module")
def clean_first_epoch(tmp_path_factory):
    """A run that trained epoch 1 on clean data (the policy matters only once a batch is bad)."""
    model_dir = tmp_path_factory.mktemp("nonfinite") / "clean"
    with pytest.MonkeyPatch.context() as monkeypatch:
        lines, stopped = _nan_run(model_dir, "stop", 1, monkeypatch)
    assert stopped is None, lines
    assert (model_dir / "checkpoints" / "ckpt-1.index").exists()
    return model_dir


@pytest.mark.parametrize("policy", ["stop", "skip_batch"])
def test_nonfinite_loss_stops_or_skips(clean_first_epoch, tmp_path, monkeypatch, policy):
    import shutil

    model_dir = tmp_path / policy
    shutil.copytree(clean_first_epoch, model_dir)
    lines, stopped = _nan_run(model_dir, policy, 2, monkeypatch)  # epoch 2 is poisoned
    checkpoints = os.listdir(model_dir / "checkpoints")
    if policy == "stop":
        assert stopped is not None and str(stopped).startswith("step 4 (epoch 2, batch 1)"), (
            stopped, lines)
        assert "ckpt-2.index" not in checkpoints and "ckpt-1.index" in checkpoints
    else:
        assert stopped is None, stopped
        assert any("skipped 3 batch(es)" in line for line in lines), lines
        metrics = json.loads((model_dir / "metrics.json").read_text())
        assert metrics["nonfinite_batches_skipped"] == 3
        assert "ckpt-2.index" in checkpoints
        weights = numeric_checkpoint(str(model_dir / "checkpoints" / "ckpt-2"))
        assert all(np.all(np.isfinite(v)) for v in weights.values() if v.dtype.kind == "f")
