"""Crash safety and hostile conditions: kill -9 and resume, unreadable checkpoints, NaN/Inf,
unwritable or full run directories, contradicting flags, atomic writes."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "flags", "smoke.cfg")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def train_command(model_dir, *extra):
    return [sys.executable, "-m", "daah_tf.train", f"--flagfile={SMOKE}",
            f"--model_dir={model_dir}", "--verbose=0", *extra]


def run(command, timeout=600):
    return subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def numeric_checkpoint(path):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(path)
    values = {}
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype != object:
            values[name] = value
    return values


def killed_at(point, model_dir, *extra):
    """Runs training with DAAH_TF_FAULT=point: the process kills itself (-9) exactly there."""
    result = subprocess.run(train_command(model_dir, *extra), cwd=REPO, capture_output=True,
                            text=True, timeout=600, env=dict(ENV, DAAH_TF_FAULT=point))
    assert result.returncode == -signal.SIGKILL, (point, result.returncode, result.stderr)
    return result


def test_kill_9_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    # Killed at the 5th of 6 batches (epoch 2 of 2, 3 batches each): an event, not a sleep.
    extra = ["--deterministic"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert run(train_command(straight, *extra)).returncode == 0
    killed_at("train_batch:5", killed, *extra)
    assert (killed / "checkpoints" / "ckpt-1.index").exists()
    assert not (killed / "metrics.json").exists()
    assert not (killed / "checkpoints" / "ckpt-2.index").exists()

    resumed = run(train_command(killed, *extra))
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming" in resumed.stdout and "epoch 1" in resumed.stdout
    a = json.loads((straight / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    for key in ("i2t_map", "t2i_map", "i2i_map", "t2t_map", "steps", "best_epoch"):
        assert a[key] == b[key], key
    weights_a = numeric_checkpoint(str(straight / "checkpoints" / "ckpt-2"))
    weights_b = numeric_checkpoint(str(killed / "checkpoints" / "ckpt-2"))
    assert weights_a.keys() == weights_b.keys() and len(weights_a) > 20
    for name in weights_a:
        np.testing.assert_array_equal(weights_a[name], weights_b[name], err_msg=name)


# Where the kill lands, and what the dead run must have left (nothing half-written trusted).
CRASH_POINTS = {
    # epoch 2's checkpoint files are complete, the checkpoint list does not name them yet
    "checkpoint_written:2": dict(latest="ckpt-1", metrics=False, versions=[]),
    # metrics.json complete in its temporary file, not renamed
    "before_rename:metrics.json": dict(latest="ckpt-2", metrics=False, versions=[]),
    # the export complete in saved_model/.partial-1, not renamed to saved_model/1
    "saved_model_staged": dict(latest="ckpt-2", metrics=True, versions=[]),
}


def _check_crash_point(tmp_path, point):
    expected = CRASH_POINTS[point]
    model_dir = tmp_path / "run"
    killed_at(point, model_dir)
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    assert os.path.basename(latest) == expected["latest"], point
    assert (model_dir / "metrics.json").exists() == expected["metrics"], point
    from daah_tf.saved_model_layout import versions

    assert versions(str(model_dir / "saved_model")) == expected["versions"], point
    resumed = run(train_command(model_dir))
    assert resumed.returncode == 0, resumed.stderr
    if expected["latest"] == "ckpt-1":
        assert "epoch 1, step 3" in resumed.stdout
    else:
        assert "training already finished at epoch 2" in resumed.stdout
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["steps"] == 6 and metrics["epochs_trained"] == 2
    assert versions(str(model_dir / "saved_model")) == [1]
    assert os.listdir(model_dir / "saved_model") == ["1"]  # the staging folder is gone
    leftovers = [name for name in os.listdir(model_dir) if name.startswith(".tmp-")]
    assert leftovers == [], leftovers


def test_kill_9_while_a_checkpoint_is_written_resumes_from_the_one_before(tmp_path):
    _check_crash_point(tmp_path, "checkpoint_written:2")


@pytest.mark.slow
@pytest.mark.parametrize("point", ["before_rename:metrics.json", "saved_model_staged"])
def test_kill_9_at_each_crash_point_then_rerun_trusts_nothing_half_written(tmp_path, point):
    _check_crash_point(tmp_path, point)


def test_export_publishes_versions_whole_and_keeps_the_newest(tmp_path, monkeypatch):
    from daah_tf import export
    from daah_tf.saved_model_layout import latest_saved_model

    class Archive:  # writes what a SavedModel has at its top, enough for the layout
        def write_out(self, path, verbose=False):
            os.makedirs(os.path.join(path, "variables"))
            with open(os.path.join(path, "saved_model.pb"), "w") as stream:
                stream.write("pb")

    base = tmp_path / "saved_model"
    with pytest.raises(FileNotFoundError, match="no SavedModel"):
        latest_saved_model(str(tmp_path))
    (base / ".partial-7").mkdir(parents=True)  # what a crash left: never served, removed
    for expected in range(1, export.KEEP_VERSIONS + 3):
        assert export._publish(Archive(), str(base)) == str(base / str(expected))
        assert latest_saved_model(str(tmp_path)) == str(base / str(expected))
    names = sorted(os.listdir(base), key=int)
    assert names == [str(v) for v in range(3, export.KEEP_VERSIONS + 3)]


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("two") / "run"
    result = run(train_command(model_dir))
    assert result.returncode == 0, result.stderr
    return model_dir


def test_unreadable_latest_checkpoint_falls_back_with_warning(two_epoch_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(two_epoch_run, copy)
    data = copy / "checkpoints" / "ckpt-2.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:100])  # a truncated copy
    result = run(train_command(copy, "--epochs=3"))
    assert result.returncode == 0, result.stderr
    assert "ckpt-2 is unreadable" in result.stderr
    assert "from " + str(copy / "checkpoints" / "ckpt-1") + ": epoch 1" in result.stdout


def _nan_run(model_dir, policy, epochs):
    """Trains on synthetic data whose bags of words get a NaN in one row of the second epoch's
    data (the first epoch is clean), through the library entry point."""
    script = f"""
import numpy as np
from daah_tf.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from daah_tf.data import pipeline
from daah_tf.training import trainer

real = pipeline.make_pipeline
def poisoned(data, split_index, batch_size, **kwargs):
    dataset = real(data, split_index, batch_size, **kwargs)
    if not kwargs.get("training"):
        return dataset
    import tensorflow as tf
    def poison(inputs, labels):
        # Every batch of epoch 2 and later: the hash loss of a row goes NaN.
        text = inputs["text"]
        bad = tf.concat([tf.fill([1, tf.shape(text)[1]], float("nan")), text[1:]], 0)
        return dict(inputs, text=bad), labels
    return dataset.skip(0).map(poison) if {epochs} > 1 and kwargs.get("first_epoch", 0) >= 1 \\
        else dataset
trainer.make_pipeline = poisoned
config = RunConfig(
    data=DataConfig(synthetic_pairs=240, synthetic_classes=4, image_size=16, batch_size=32),
    model=ModelConfig(bits=16, cnn_filters=(4, 8), image_hidden_units=(16, 16),
                      text_units=(16, 16)),
    train=TrainConfig(model_dir=r"{model_dir}", epochs={epochs}, max_steps_per_epoch=3,
                      on_nonfinite="{policy}", verbose=0))
from daah_tf.training.monitor import NonFiniteTrainingError
try:
    trainer.train_and_evaluate(config, "")
except NonFiniteTrainingError as error:
    print("STOPPED:", error)
"""
    return run([sys.executable, "-c", script])


@pytest.mark.parametrize("policy", ["stop", "skip_batch"])
def test_nonfinite_loss_stops_or_skips(tmp_path, policy):
    model_dir = tmp_path / policy
    first = _nan_run(model_dir, policy, epochs=1)  # clean epoch 1
    assert first.returncode == 0, first.stderr
    assert "STOPPED" not in first.stdout
    second = _nan_run(model_dir, policy, epochs=2)  # epoch 2 is poisoned
    assert second.returncode == 0, second.stderr
    checkpoints = os.listdir(model_dir / "checkpoints")
    if policy == "stop":
        assert "STOPPED: step 4 (epoch 2, batch 1)" in second.stdout
        assert "ckpt-2.index" not in checkpoints and "ckpt-1.index" in checkpoints
    else:
        assert "skipped 3 batch(es)" in second.stdout
        metrics = json.loads((model_dir / "metrics.json").read_text())
        assert metrics["nonfinite_batches_skipped"] == 3
        assert "ckpt-2.index" in checkpoints
        weights = numeric_checkpoint(str(model_dir / "checkpoints" / "ckpt-2"))
        assert all(np.all(np.isfinite(v)) for v in weights.values() if v.dtype.kind == "f")


def test_model_dir_that_is_not_writable_fails_at_start(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    result = run(train_command(blocker / "run"))
    assert result.returncode != 0
    assert "is not writable" in result.stderr and "Traceback" not in result.stderr


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


def test_splits_and_featurizer_are_written_atomically(tmp_path, monkeypatch):
    from daah_tf.data.splits import write_splits
    from daah_tf.data.text_featurizer import TextFeaturizer

    write_splits({"train": np.arange(3)}, str(tmp_path / "splits.json"))
    TextFeaturizer(["a", "b"]).save(str(tmp_path))
    before = {name: (tmp_path / name).read_text() for name in os.listdir(tmp_path)}

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_splits({"train": np.arange(5)}, str(tmp_path / "splits.json"))
    with pytest.raises(OSError):
        TextFeaturizer(["c"]).save(str(tmp_path))
    assert {name: (tmp_path / name).read_text() for name in os.listdir(tmp_path)} == before


@pytest.mark.parametrize("flags, message", [
    (["--image_weights=imagenet"], "--image_weights is for --image_backbone=vgg19"),
    (["--logical_cpu_devices=2"], "--logical_cpu_devices is for --distribution=mirrored"),
    (["--feature_cache=/tmp/x"], "--feature_cache needs --image_backbone=precomputed"),
    (["--dataset=wiki", "--data_dir=/tmp"], "--image_backbone=precomputed"),
])
def test_contradicting_flags_are_refused_at_start(tmp_path, flags, message):
    result = run(train_command(tmp_path / "run", *flags))
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "run").exists()


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    from daah_tf.training import run_directory

    target = tmp_path / "metrics.json"
    run_directory.atomic_write_json(str(target), {"i2t_map": 0.5})

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        run_directory.atomic_write_json(str(target), {"i2t_map": 0.9})
    assert json.loads(target.read_text()) == {"i2t_map": 0.5}
    assert os.listdir(tmp_path) == ["metrics.json"]  # no temporary file left behind
