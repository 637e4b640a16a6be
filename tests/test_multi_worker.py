"""A real two-worker run: two processes of `python -m daah_tf.train --distribution=multi_worker`
on 127.0.0.1, as a user starts them on two hosts (README "Scaling out")."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "flags", "smoke.cfg")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
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


def test_two_workers_train_like_one_process_survive_a_lost_worker_and_resume(tmp_path):
    single, run = tmp_path / "single", tmp_path / "two_workers"
    reference = subprocess.run(command(single)[:-1], cwd=REPO, env=ENV, capture_output=True,
                               text=True, timeout=HANG_GUARD_S)
    assert reference.returncode == 0, reference.stderr

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
