"""The training entry point end to end: artefacts, resume, SavedModel, bad flags."""

# Crash safety and hostile conditions: kill -9 and resume, unreadable checkpoints, NaN/Inf,
# unwritable or full run directories, contradicting flags, atomic writes.

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _commands import ENV, REPO, SMOKE, numeric_checkpoint, run, train_command

from daah_tf.saved_model_layout import latest_saved_model

LOSS_TERMS = ["loss", "retrieval_loss", "adversarial_loss", "attention_objective", "ret_t2i",
              "ret_i2t", "ret_i2i", "ret_t2t", "adv_t2i", "adv_i2t"]


def run_module(module, *args, cwd=REPO, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _event_tags(directory):
    import tensorflow as tf

    tags = set()
    for name in os.listdir(directory):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(directory, name)):
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_smoke_run_writes_every_artefact(smoke_run):
    model_dir, stdout = smoke_run
    assert "mAP  I->T" in stdout and "chance" in stdout and "IoU" in stdout
    flags_text = open(os.path.join(model_dir, "flags.txt")).read()
    assert "--bits=16" in flags_text and f"--model_dir={model_dir}" in flags_text
    config = json.load(open(os.path.join(model_dir, "config.json")))
    assert config["model"]["bits"] == 16 and config["train"]["epochs"] == 2
    checkpoints = os.listdir(os.path.join(model_dir, "checkpoints"))
    assert "ckpt-2.index" in checkpoints and "ckpt-1.index" in checkpoints
    assert any(n.endswith(".index") for n in os.listdir(os.path.join(model_dir, "checkpoints",
                                                                     "best")))
    metrics = json.load(open(os.path.join(model_dir, "metrics.json")))
    for key in ("i2t_map", "t2i_map", "i2i_map", "t2t_map"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["bits"] == 16 and metrics["dataset"] == "synthetic"
    assert metrics["num_labels"] == 4  # collapse measures of the database codes, every run
    for modality in ("image", "text"):
        assert 0.0 <= metrics[f"bit_balance_{modality}"] <= 1.0
        assert 1 <= metrics[f"distinct_codes_{modality}"] <= metrics["num_database"]
    assert "bit balance image" in stdout
    for modality in ("image", "text"):  # the selected model's masks on the query set
        assert 0.0 < metrics[f"attended_share_{modality}"] <= 1.0
    assert "attended share (query set): image" in stdout
    assert metrics["best_epoch"] in (1, 2) and metrics["selected_on"] == "validation"
    splits = json.load(open(os.path.join(model_dir, "splits.json")))
    assert not set(splits["validation"]) & set(splits["query"])
    assert not set(splits["validation"]) & set(splits["train"])
    assert os.path.exists(os.path.join(latest_saved_model(model_dir), "saved_model.pb"))
    assert os.listdir(os.path.join(model_dir, "saved_model")) == ["1"]  # TF Serving layout
    train_tags = _event_tags(os.path.join(model_dir, "tensorboard", "train"))
    validation_tags = _event_tags(os.path.join(model_dir, "tensorboard", "validation"))
    for term in LOSS_TERMS + ["attended_fraction_image", "attended_fraction_text"]:
        assert f"epoch_{term}" in train_tags, term
        assert f"epoch_{term}" in validation_tags, term
    assert {"learning_rate/hash", "learning_rate/attention"} <= train_tags
    assert {"map/i2t", "map/t2i", "attention/image_mask"} <= validation_tags


def test_flags_txt_is_a_flagfile_that_resumes(smoke_run, tmp_path):
    model_dir, _ = smoke_run
    copy = str(tmp_path / "copy")
    shutil.copytree(model_dir, copy)
    # The copied flags name the original directory; point them at the copy and add an epoch.
    flags_text = open(os.path.join(copy, "flags.txt")).read().replace(model_dir, copy)
    flagfile = tmp_path / "again.cfg"
    flagfile.write_text(flags_text.replace("--epochs=2", "--epochs=3"))
    steps_before = json.load(open(os.path.join(copy, "metrics.json")))["steps"]
    # The resumed run keeps the split it started with (as a run begun under other split rules
    # must): one validation pair swapped with a training pair stays swapped.
    splits_path = os.path.join(copy, "splits.json")
    splits = json.load(open(splits_path))
    splits["validation"][0], splits["train"][0] = splits["train"][0], splits["validation"][0]
    splits = {name: sorted(index) for name, index in splits.items()}
    open(splits_path, "w").write(json.dumps(splits))
    result = run_module("daah_tf.train", f"--flagfile={flagfile}")
    assert result.returncode == 0, result.stderr
    assert "Resuming" in result.stdout and "epoch 2" in result.stdout
    assert json.load(open(splits_path)) == splits
    after = json.load(open(os.path.join(copy, "metrics.json")))
    assert after["epochs_trained"] == 3
    assert after["steps"] > steps_before  # the global step went on from the checkpoint
    assert "ckpt-3.index" in os.listdir(os.path.join(copy, "checkpoints"))


def test_other_settings_in_same_dir_are_refused(smoke_run):
    model_dir, _ = smoke_run
    before = open(os.path.join(model_dir, "config.json")).read()
    result = run_module("daah_tf.train", f"--flagfile={SMOKE}", f"--model_dir={model_dir}",
                        "--bits=8")
    assert result.returncode != 0
    assert "model.bits: 16 -> 8" in result.stderr and "Traceback" not in result.stderr
    assert open(os.path.join(model_dir, "config.json")).read() == before


@pytest.mark.parametrize("flag, message", [
    ("--no_such_flag=1", "Unknown command line flag"),
    ("--bits=0", "--bits=0"),
    ("--dataset=wiki", "--data_dir (or a --feature_cache) is required"),
    ("--cnn_filters=4,x", "--cnn_filters"),
])
def test_bad_flags_exit_before_writing(tmp_path, flag, message):
    model_dir = tmp_path / "never"
    result = run_module("daah_tf.train", f"--flagfile={SMOKE}", f"--model_dir={model_dir}", flag)
    assert result.returncode != 0
    assert message in result.stderr
    assert not model_dir.exists()


LOAD_WITHOUT_DAAH = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    path, inputs_file = sys.argv[1], sys.argv[2]
    inputs = np.load(inputs_file, allow_pickle=False)
    loaded = tf.saved_model.load(path)
    sig = loaded.signatures
    out = {
        "image": sig["encode_image"](images=tf.constant(inputs["images"])),
        "image_bytes": sig["encode_image_bytes"](image_bytes=tf.constant(
            [bytes(b) for b in inputs["png"]])),
        "text": sig["encode_text"](texts=tf.constant([str(t) for t in inputs["texts"]])),
        "text_bow": sig["encode_text_bow"](bow=tf.constant(inputs["bow"])),
    }
    assert "daah_tf" not in sys.modules, "the SavedModel needed daah_tf"
    print(json.dumps({k: {n: v.numpy().tolist() for n, v in o.items()} for k, o in out.items()}))
""")


def test_saved_model_loads_without_daah_tf_and_matches(smoke_run, tmp_path):
    import io

    from PIL import Image

    from daah_tf.data.synthetic import make_synthetic
    from daah_tf.losses import binary_codes
    from daah_tf.run import restore_model

    model_dir, _ = smoke_run
    model, featurizer, config, _ = restore_model(model_dir)
    data = make_synthetic(num_pairs=20, num_classes=4, image_size=16, seed=5)
    images = data.images[:6].astype(np.float32)
    texts = data.texts[:6]
    bow = featurizer.transform(texts)
    png = []
    for image in data.images[:6]:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        png.append(np.frombuffer(buffer.getvalue(), np.uint8))
    inputs_file = tmp_path / "inputs.npz"
    np.savez(inputs_file, images=images, texts=np.asarray(texts, dtype=str), bow=bow,
             png=np.asarray([p.tobytes() for p in png], dtype=bytes))
    script = tmp_path / "load.py"
    script.write_text(LOAD_WITHOUT_DAAH)
    result = subprocess.run([sys.executable, str(script), latest_saved_model(model_dir),
                             str(inputs_file)], cwd=str(tmp_path), capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr
    served = json.loads(result.stdout.strip().splitlines()[-1])
    image_codes = binary_codes(model.encode_image(images)).numpy()
    text_codes = binary_codes(model.encode_text(bow)).numpy()
    np.testing.assert_array_equal(served["image"]["codes"], image_codes)
    np.testing.assert_array_equal(served["image_bytes"]["codes"], image_codes)  # lossless PNG
    np.testing.assert_array_equal(served["text"]["codes"], text_codes)
    np.testing.assert_array_equal(served["text_bow"]["codes"], text_codes)
    np.testing.assert_array_equal(served["image"]["packed_codes"],
                                  np.packbits(image_codes > 0, axis=1))
    assert set(np.unique(image_codes)) <= {-1, 1}


def test_saved_model_cli_show_and_run(smoke_run):
    model_dir, _ = smoke_run
    path = latest_saved_model(model_dir)
    cli = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable))
    assert cli, "saved_model_cli is installed with TensorFlow"
    # Both commands only read the SavedModel: they run side by side.
    commands = {"show": [cli, "show", "--dir", path, "--all"],
                "run": [cli, "run", "--dir", path, "--tag_set", "serve", "--signature_def",
                        "encode_text", "--input_exprs", 'texts=["w1x0 w1x2 noise3", "w0x1"]']}
    processes = {name: subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True) for name, command in commands.items()}
    try:  # (one that fills its pipe meanwhile only waits for its turn to be read)
        outputs = {name: process.communicate(timeout=300)
                   for name, process in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    (shown, shown_err), (ran, ran_err) = outputs["show"], outputs["run"]
    assert processes["show"].returncode == 0, shown_err
    for name in ("encode_image", "encode_image_bytes", "encode_text", "encode_text_bow"):
        assert f"signature_def['{name}']" in shown
    assert processes["run"].returncode == 0, ran_err
    assert "codes" in ran and "packed_codes" in ran


@pytest.mark.prefetch(
    "learns", "-m", "daah_tf.train", f"--flagfile={SMOKE}", "--model_dir={folder}/learns",
    "--synthetic_pairs=1200", "--synthetic_classes=8", "--epochs=15", "--max_steps_per_epoch=0",
    "--image_size=32", "--cnn_filters=8,16,32", "--image_hidden_units=128,128",
    "--text_units=64,64", "--hash_learning_rate=0.003", "--verbose=0")
def test_a_short_run_learns_well_above_chance(prefetched):
    # About 40 s on 2 cores: 1,200 synthetic pairs, 15 epochs (the command above, started in
    # the background when this test is collected: tests/_background.py). Retrieval in both
    # directions must reach at least twice the mAP of a random ranking (chance 0.22 here).
    # Seeds 0-4, 2026-12-02: mAP / chance 2.36-3.32 (10 epochs were not enough: seed 2 ended at
    # 1.91).
    assert prefetched.returncode == 0, prefetched.stdout + prefetched.stderr
    metrics = json.loads(
        open(os.path.join(prefetched.folder, "learns", "metrics.json")).read())
    assert metrics["i2t_map"] >= 2 * metrics["chance_map"], metrics
    assert metrics["t2i_map"] >= 2 * metrics["chance_map"], metrics
    # ... and does not end collapsed (issue 12): bits not constant over the database, and at
    # least as many distinct database codes as labels, in both modalities.
    for modality in ("image", "text"):
        assert metrics[f"bit_balance_{modality}"] < 0.9, metrics
        assert metrics[f"distinct_codes_{modality}"] >= metrics["num_labels"], metrics






def killed_at(point, model_dir, *extra):
    """Runs training with DAAH_TF_FAULT=point: the process kills itself (-9) exactly there."""
    result = subprocess.run(train_command(model_dir, *extra), cwd=REPO, capture_output=True,
                            text=True, timeout=600, env=dict(ENV, DAAH_TF_FAULT=point))
    assert result.returncode == -signal.SIGKILL, (point, result.returncode, result.stderr)
    return result


def started(command, log_path):
    """`command` started in the background, its output going to `log_path` (a file, not a
    pipe that could fill while nobody reads it)."""
    with open(log_path, "w") as log:
        return subprocess.Popen(command, cwd=REPO, env=ENV, stdout=log,
                                stderr=subprocess.STDOUT)


def test_kill_9_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    # Killed at the 5th of 6 batches (epoch 2 of 2, 3 batches each): an event, not a sleep.
    extra = ["--deterministic"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    # The uninterrupted run is independent of the killed one: it trains alongside.
    uninterrupted = started(train_command(straight, *extra), tmp_path / "straight.log")
    try:
        killed_at("train_batch:5", killed, *extra)
        assert uninterrupted.wait(timeout=600) == 0, (tmp_path / "straight.log").read_text()
    finally:
        if uninterrupted.poll() is None:
            uninterrupted.kill()
            uninterrupted.wait()
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


def test_model_dir_that_is_not_writable_fails_at_start(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    result = run(train_command(blocker / "run"))
    assert result.returncode != 0
    assert "is not writable" in result.stderr and "Traceback" not in result.stderr


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
