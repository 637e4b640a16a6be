#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU: installs daah_tf with the CUDA extra into a fresh
# virtual environment and prints one table of VGG19 224x224 end-to-end DAAH training images/s at
# batch 128, float32 and bfloat16, jit_compile off and on, then a short correctness run (finite
# losses, mAP above chance on synthetic data). Meant to finish in under 8 minutes.
#
#   bash tools/gpu_check.sh            # from the repository root
#
# Needs network access to PyPI (or a pip configuration that reaches a mirror).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${GPU_CHECK_VENV:-.venv-gpu}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
"$VENV/bin/python" -m pip install --quiet -e ".[cuda]"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

"$VENV/bin/python" - <<'PY'
import os, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np, keras, tensorflow as tf
from daah_tf.config import ModelConfig
from daah_tf.models import build_model

gpus = tf.config.list_physical_devices("GPU")
if not gpus:
    raise SystemExit("no GPU visible to TensorFlow")
print("GPU:", tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name))
BATCH, STEPS = 128, 20
rng = np.random.default_rng(0)
rows = []
for precision in ("float32", "bfloat16"):
    for jit in (False, True):
        keras.mixed_precision.set_global_policy(
            "mixed_bfloat16" if precision == "bfloat16" else "float32")
        keras.utils.set_random_seed(0)
        model = build_model(ModelConfig(bits=64, image_backbone="vgg19", image_weights="none",
                                        image_hidden_units=(4096, 4096),
                                        text_units=(4096, 512)), (224, 224, 3), 1386)
        model.compile(hash_optimizer=keras.optimizers.Adam(1e-5),
                      attention_optimizer=keras.optimizers.Adam(1e-5), jit_compile=jit)
        images = tf.constant(rng.uniform(0, 255, (BATCH, 224, 224, 3)), tf.float32)
        texts = tf.constant(rng.integers(0, 2, (BATCH, 1386)), tf.float32)
        labels = tf.constant(rng.random((BATCH, 24)) < 0.15, tf.float32)
        dataset = tf.data.Dataset.from_tensors(({"image": images, "text": texts}, labels)).repeat()
        model.fit(dataset, steps_per_epoch=3, epochs=1, verbose=0)  # trace, compile, warm up
        start = time.perf_counter()
        history = model.fit(dataset, steps_per_epoch=STEPS, epochs=1, verbose=0)
        seconds = time.perf_counter() - start
        finite = all(np.isfinite(v[-1]) for v in history.history.values())
        rows.append((precision, jit, BATCH * STEPS / seconds, finite))
        keras.backend.clear_session()
keras.mixed_precision.set_global_policy("float32")
print(f"{'precision':<10}{'jit':<6}{'images/s':>10}{'finite':>8}")
for precision, jit, speed, finite in rows:
    print(f"{precision:<10}{str(jit):<6}{speed:>10.0f}{str(finite):>8}")
PY

rm -rf /tmp/daah_gpu_check
"$VENV/bin/python" -m daah_tf.train --flagfile=flags/demo.cfg --model_dir=/tmp/daah_gpu_check \
  --epochs=8 --verbose=0 | tail -3
"$VENV/bin/python" - <<'PY'
import json
m = json.load(open("/tmp/daah_gpu_check/metrics.json"))
ok = min(m["i2t_map"], m["t2i_map"]) > m["chance_map"]
print(f"correctness: mAP I->T {m['i2t_map']:.3f} T->I {m['t2i_map']:.3f} "
      f"chance {m['chance_map']:.3f} -> {'OK' if ok else 'FAILED'}")
raise SystemExit(0 if ok else 1)
PY
