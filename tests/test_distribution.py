"""The minimax step under tf.distribute, mixed precision, XLA and both update modes."""

import json
import os
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

    config = ModelConfig(bits=8, cnn_filters=(4, 8), image_hidden_units=(16, 16),
                         text_units=(16, 8), update=sys.argv[1])
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (48, 16, 16, 3)).astype("float32")
    texts = (rng.random((48, 30)) < 0.2).astype("float32")
    labels = (rng.random((48, 5)) < 0.3).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices(
        ({"image": images, "text": texts}, labels)).batch(16)

    def make(strategy, weights=None):
        with strategy.scope():
            keras.utils.set_random_seed(1)
            model = build_model(config, (16, 16, 3), 30)
            model.compile(hash_optimizer=keras.optimizers.Adam(1e-2),
                          attention_optimizer=keras.optimizers.Adam(1e-2))
            if weights is not None:
                model.set_weights(weights)
        return model

    single = make(tf.distribute.get_strategy())
    start = single.get_weights()
    mirrored_strategy = make_strategy("mirrored")
    mirrored = make(mirrored_strategy, start)
    single.fit(dataset, epochs=1, verbose=0, shuffle=False)
    mirrored.fit(dataset, epochs=1, verbose=0, shuffle=False)
    differences = [float(np.max(np.abs(a - b))) for a, b in
                   zip(single.get_weights(), mirrored.get_weights())]
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(start, single.get_weights()))

    # A checkpoint written under 2 replicas restores on 1 device.
    checkpoint = tf.train.Checkpoint(model=mirrored, hash_optimizer=mirrored.hash_optimizer,
                                     attention_optimizer=mirrored.attention_optimizer)
    path = checkpoint.write(sys.argv[2])
    restored = make(tf.distribute.get_strategy())
    tf.train.Checkpoint(model=restored, hash_optimizer=restored.hash_optimizer,
                        attention_optimizer=restored.attention_optimizer).read(path)
    same_codes = bool(np.array_equal(
        np.sign(mirrored.encode_image(images[:8]).numpy()),
        np.sign(restored.encode_image(images[:8]).numpy())))
    print(json.dumps({"replicas": mirrored_strategy.num_replicas_in_sync,
                      "max_difference": max(differences), "moved": moved,
                      "same_codes": same_codes,
                      "iterations": int(restored.hash_optimizer.iterations.numpy())}))
""")


@pytest.mark.parametrize("update", ["alternating", "simultaneous"])
def test_mirrored_on_two_cpu_devices_matches_single_device(tmp_path, update):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_VS_SINGLE)
    result = subprocess.run([sys.executable, str(script), update, str(tmp_path / "ckpt")],
                            cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["replicas"] == 2
    assert outcome["moved"] > 1e-3  # training did change the weights
    # Codes and labels are gathered across replicas, so the loss is the global batch's.
    assert outcome["max_difference"] < 1e-4, outcome
    assert outcome["same_codes"] and outcome["iterations"] == 3


@pytest.mark.parametrize("extra", [
    ["--mixed_precision=bfloat16"],  # XLA itself: test_daah_model::test_fit_with_xla
    # A one-worker MultiWorkerMirroredStrategy (no TF_CONFIG): the guarded update must not
    # put a cross-replica merge inside tf.cond even with a single replica.
    ["--mixed_precision=float16", "--update=simultaneous", "--distribution=multi_worker"],
])
def test_precision_jit_and_update_flags_train_and_export(tmp_path, extra):
    model_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "daah_tf.train", f"--flagfile={SMOKE}",
         f"--model_dir={model_dir}", "--verbose=0", *extra],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert all(np.isfinite(metrics[k]) for k in ("i2t_map", "t2i_map", "i2i_map", "t2t_map"))
    assert metrics["nonfinite_batches_skipped"] == 0
    assert (model_dir / "saved_model" / "saved_model.pb").exists()
