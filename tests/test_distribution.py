"""The minimax step under tf.distribute, mixed precision, XLA and both update modes."""

# A real two-worker run: two processes of `python -m daah_tf.train --distribution=multi_worker`
# on 127.0.0.1, as a user starts them on two hosts (README "Scaling out").

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


SMOKE = os.path.join(REPO, "flags", "smoke.cfg")


ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


MIRRORED_VS_SINGLE = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    from daah_tf.training.distribution import make_strategy, split_cpu
    split_cpu(2)  # before TensorFlow touches a device
    import keras
    from daah_tf.config import ModelConfig
    from daah_tf.models import build_model

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (48, 16, 16, 3)).astype("float32")
    texts = (rng.random((48, 30)) < 0.2).astype("float32")
    labels = (rng.random((48, 5)) < 0.3).astype("float32")
    poisoned_texts = texts.copy()
    poisoned_texts[3, 0] = np.nan  # one row of one replica's half: that replica's loss is NaN

    def batches(t, count):
        return tf.data.Dataset.from_tensor_slices(
            ({"image": images[:16 * count], "text": t[:16 * count]}, labels[:16 * count])
        ).batch(16)

    default, mirrored_strategy = tf.distribute.get_strategy(), make_strategy("mirrored")

    def make(strategy, update, weights=None, optimizer="sgd", policy="stop"):
        config = ModelConfig(bits=8, cnn_filters=(4, 8), image_hidden_units=(16, 16),
                             text_units=(16, 8), update=update)
        with strategy.scope():
            keras.utils.set_random_seed(1)
            model = build_model(config, (16, 16, 3), 30)
            # SGD: a wrong replica factor (a gradient off by a constant) changes the step;
            # Adam would hide it, being invariant to a constant gradient scale.
            new = {"sgd": lambda: keras.optimizers.SGD(0.5),
                   "adam": lambda: keras.optimizers.Adam(1e-2)}[optimizer]
            model.compile(hash_optimizer=new(), attention_optimizer=new(), on_nonfinite=policy)
            if weights is not None:
                model.set_weights(weights)
        return model

    def player_state(model, player):
        # A player's weights and its optimizer's variables (moments, iteration count, ...).
        optimizer = getattr(model, f"{player}_optimizer")
        return [np.array(v) for v in getattr(model, f"{player}_variables") + optimizer.variables]

    def same(a, b):
        return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))

    def poisonable(model):
        # While `poison` is 1, pass 2's objective (the attention player's) is NaN; while
        # `hash_poison` is 1, pass 1's (the hashing player's). Poisoning the objectives, not
        # the inputs, keeps the test independent of whether a fused ReLU passes a NaN input on.
        poison = tf.Variable(0.0, trainable=False)
        hash_poison = tf.Variable(0.0, trainable=False)
        real = model._adversarial_loss
        real_losses = model.compute_losses

        def adversarial_loss(outputs, labels, attention_player=False):
            terms = real(outputs, labels, attention_player)
            if attention_player:
                terms = dict(terms, total=terms["total"] + tf.where(poison > 0, np.nan, 0.0))
            return terms

        def compute_losses(outputs, labels):
            terms = real_losses(outputs, labels)
            return dict(terms, loss=terms["loss"] + tf.where(hash_poison > 0, np.nan, 0.0))

        model._adversarial_loss = adversarial_loss
        model.compute_losses = compute_losses
        return model, poison, hash_poison

    def step(model, text):
        # One batch; returns what changed: {player: (state unchanged, iterations added)}.
        before = {p: player_state(model, p) for p in ("hash", "attention")}
        count = {p: int(getattr(model, f"{p}_optimizer").iterations.numpy())
                 for p in ("hash", "attention")}
        logs = model.fit(batches(text, 1), epochs=1, verbose=0, shuffle=False).history
        return {"counted": float(logs["nonfinite_batches"][-1]), **{
            p: [same(before[p], player_state(model, p)),
                int(getattr(model, f"{p}_optimizer").iterations.numpy()) - count[p]]
            for p in ("hash", "attention")}}

    outcome = {"replicas": mirrored_strategy.num_replicas_in_sync}
    for update in ("alternating", "simultaneous"):
        result = outcome[update] = {}
        single = make(default, update)
        start = single.get_weights()
        mirrored = make(mirrored_strategy, update, start)
        single.fit(batches(texts, 3), epochs=1, verbose=0, shuffle=False)
        mirrored.fit(batches(texts, 3), epochs=1, verbose=0, shuffle=False)
        result["max_difference"] = max(float(np.max(np.abs(a - b))) for a, b in
                                       zip(single.get_weights(), mirrored.get_weights()))
        result["moved"] = max(float(np.max(np.abs(a - b)))
                              for a, b in zip(start, single.get_weights()))
        for name, strategy in (("single", default), ("mirrored", mirrored_strategy)):
            model, poison, hash_poison = poisonable(
                make(strategy, update, start, "adam", "skip_batch"))
            result[name] = {"good": step(model, texts)}  # Adam's moments are not zero now
            # Pass 1's objective NaN: the hashing player is refused, pass 2 stands alone.
            hash_poison.assign(1.0)
            result[name]["pass1_only"] = step(model, texts)
            hash_poison.assign(0.0)
            poison.assign(1.0)
            result[name]["pass2_only"] = step(model, texts)
            # A NaN in the input as well: neither player is applied.
            hash_poison.assign(1.0)
            result[name]["both"] = step(model, poisoned_texts)
    print(json.dumps(outcome))
""")


def test_mirrored_on_two_cpu_devices_matches_single_device_and_skips_nonfinite(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_VS_SINGLE)
    result = subprocess.run([sys.executable, str(script)],
                            cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["replicas"] == 2
    for update in ("alternating", "simultaneous"):
        result = outcome[update]
        assert result["moved"] > 1e-3, result  # training did change the weights
        # Codes and labels are gathered across replicas, so the loss is the global batch's;
        # with SGD a wrong 1/replicas factor would show here.
        assert result["max_difference"] < 1e-5, result
        for name in ("single", "mirrored"):
            # [player's weights and optimizer state unchanged, iterations added]
            assert result[name] == {
                "good": {"counted": 0.0, "hash": [False, 1], "attention": [False, 1]},
                "pass1_only": {"counted": 1.0, "hash": [True, 0], "attention": [False, 1]},
                "pass2_only": {"counted": 1.0, "hash": [False, 1], "attention": [True, 0]},
                "both": {"counted": 1.0, "hash": [True, 0], "attention": [True, 0]},
            }, (update, name, result[name])


def _train(model_dir, *extra):
    return subprocess.run(
        [sys.executable, "-m", "daah_tf.train", f"--flagfile={SMOKE}",
         f"--model_dir={model_dir}", "--verbose=0", *extra],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)


def test_resume_across_device_counts_one_two_one(smoke_run, tmp_path):
    # The real resume path: the same command rerun with another device count. The first,
    # one-device part is (a copy of) the session's smoke run: two epochs (conftest.py).
    model_dir = tmp_path / "run"
    shutil.copytree(smoke_run[0], model_dir)
    mirrored = ["--distribution=mirrored", "--logical_cpu_devices=2"]
    second = _train(model_dir, "--epochs=3", *mirrored)  # 1 device -> 2
    assert second.returncode == 0, second.stderr
    assert f"from {model_dir / 'checkpoints' / 'ckpt-2'}: epoch 2, step 6" in second.stdout
    third = _train(model_dir, "--epochs=4")  # 2 devices -> 1
    assert third.returncode == 0, third.stderr
    assert f"from {model_dir / 'checkpoints' / 'ckpt-3'}: epoch 3, step 9" in third.stdout
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["steps"] == 12 and metrics["epochs_trained"] == 4


PRECISION_RUNS = {
    "bfloat16": ["--mixed_precision=bfloat16"],  # XLA itself: test_daah::test_fit_with_xla
    # A one-worker MultiWorkerMirroredStrategy (no TF_CONFIG): the guarded update must not
    # put a cross-replica merge inside tf.cond even with a single replica.
    "float16_simultaneous_multi_worker": [
        "--mixed_precision=float16", "--update=simultaneous", "--distribution=multi_worker"],
}


@pytest.fixture(scope="module")
def precision_runs(tmp_path_factory):
    """{name: (exit status, output, model_dir)} of the PRECISION_RUNS, which are independent of
    each other: they train side by side (output to files, not pipes nobody reads meanwhile)."""
    root = tmp_path_factory.mktemp("precision")
    processes = {}
    try:
        for name, extra in PRECISION_RUNS.items():
            with open(root / f"{name}.log", "w") as log:
                processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "daah_tf.train", f"--flagfile={SMOKE}",
                     f"--model_dir={root / name}", "--verbose=0", *extra],
                    cwd=REPO, env=ENV, stdout=log, stderr=subprocess.STDOUT)
        return {name: (process.wait(timeout=600), (root / f"{name}.log").read_text(),
                       root / name) for name, process in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.parametrize("name", list(PRECISION_RUNS))
def test_precision_jit_and_update_flags_train_and_export(precision_runs, name):
    status, output, model_dir = precision_runs[name]
    assert status == 0, output
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert all(np.isfinite(metrics[k]) for k in ("i2t_map", "t2i_map", "i2i_map", "t2t_map"))
    assert metrics["nonfinite_batches_skipped"] == 0
    assert (model_dir / "saved_model" / "1" / "saved_model.pb").exists()


# Only a hang guard: a lost worker is noticed by the coordination service's heartbeats in
# seconds (6-16 s measured); the test never asserts on time.
HANG_GUARD_S = 600


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for one in sockets:
        one.bind(("127.0.0.1", 0))
    ports = [one.getsockname()[1] for one in sockets]
    for one in sockets:
        one.close()
    return ports


def command(model_dir):
    return [sys.executable, "-m", "daah_tf.train", f"--flagfile={SMOKE}",
            f"--model_dir={model_dir}", "--verbose=0", "--distribution=multi_worker"]


def start_workers(model_dir, fault_on_worker_1=None):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(2):
        env = dict(ENV, TF_CONFIG=json.dumps({"cluster": cluster,
                                              "task": {"type": "worker", "index": index}}))
        if index == 1 and fault_on_worker_1:
            env["DAAH_TF_FAULT"] = fault_on_worker_1
        processes.append(subprocess.Popen(command(model_dir), cwd=REPO, env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    return processes


def finish(process):
    out, err = process.communicate(timeout=HANG_GUARD_S)
    return process.returncode, out, err


def weights(model_dir):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints", "ckpt-2"))
    # The model's weights are saved through the optimizers (their _trainable_variables).
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith(("hash_optimizer/", "attention_optimizer/"))
            and reader.get_tensor(name).dtype.kind == "f"}


def test_two_workers_train_like_one_process_survive_a_lost_worker_and_resume(smoke_run,
                                                                            tmp_path):
    # One process, the same flags without --distribution: the session's smoke run (conftest.py).
    single, run = smoke_run[0], tmp_path / "two_workers"

    # Worker 1 is killed (-9) in epoch 2 (3 batches an epoch), after the epoch-1 checkpoint.
    chief, other = start_workers(run, fault_on_worker_1="train_batch:5")
    other_status, _, _ = finish(other)
    assert other_status == -9
    status, _, err = finish(chief)  # fails, with a message, instead of hanging
    assert status != 0
    assert "a worker of this multi-worker run stopped" in err and "Traceback" not in err, err
    assert (run / "checkpoints" / "ckpt-1.index").exists()
    assert not (run / "checkpoints" / "ckpt-2.index").exists()

    # The same command again on both workers resumes from epoch 1 and finishes.
    results = [finish(process) for process in start_workers(run)]
    for status, out, err in results:
        assert status == 0, err
        assert "epoch 1, step 3" in out, out
    # One run directory: the chief's files, and the other worker's checkpoint copies in it.
    assert sorted(os.listdir(run / "workers")) == ["1"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 6 and metrics["epochs_trained"] == 2
    assert (run / "saved_model" / "1" / "saved_model.pb").exists()
    # The same global batch as one process: the same weights (up to float summation order).
    ours, theirs = weights(run), weights(single)
    assert ours.keys() == theirs.keys() and len(ours) > 10
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], atol=1e-5, err_msg=name)
