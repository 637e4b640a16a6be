"""Training-speed benchmark: pairs/s and peak memory of the DAAH minimax step.

    python tools/bench_train.py [--steps=12] [--repeats=5] [--batch_size=64]

For each input path (small_cnn end to end at 64x64, a cached 7x7x512 feature map, a 128-d
vector) and each update mode (alternating, simultaneous), one child process builds the model and
times, interleaved (so both see the same machine load), a DAAH train step (both players) and a
plain forward+backward of the same networks with a single optimizer over all variables. It prints
a table (medians over repeats), then as its last line `minimax_over_single=<x>` for small_cnn end
to end with alternating updates (the paper's schedule).

A benchmark, not a test: the numbers depend on the machine; compare ratios from one run.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PATHS = {
    # name: (image input shape, ModelConfig overrides)
    "small_cnn 64x64": ((64, 64, 3), {"image_backbone": "small_cnn",
                                      "cnn_filters": (32, 64, 128),
                                      "image_hidden_units": (512, 512)}),
    "precomputed 7x7x512": ((7, 7, 512), {"image_backbone": "precomputed",
                                          "image_hidden_units": (1024, 1024)}),
    "vector 128": ((128,), {"image_backbone": "precomputed",
                            "image_hidden_units": (512, 512)}),
}
TEXT_DIM = 1000


def _child(path, update, steps, repeats, batch_size):
    """Runs in a subprocess: times both steps, prints one JSON line."""
    import keras
    import numpy as np
    import tensorflow as tf

    from daah_tf.config import ModelConfig
    from daah_tf.models import build_model

    keras.utils.set_random_seed(0)
    image_shape, overrides = PATHS[path]
    config = ModelConfig(bits=32, text_units=(512, 256), update=update, **overrides)
    model = build_model(config, image_shape, TEXT_DIM)
    model.compile(hash_optimizer=keras.optimizers.Adam(1e-4),
                  attention_optimizer=keras.optimizers.Adam(1e-4))
    rng = np.random.default_rng(0)
    scale = 255.0 if path.startswith("small_cnn") else 1.0
    inputs = {"image": tf.constant(rng.uniform(0, scale, (batch_size, *image_shape)), tf.float32),
              "text": tf.constant(rng.integers(0, 2, (batch_size, TEXT_DIM)), tf.float32)}
    labels = tf.constant(rng.random((batch_size, 8)) < 0.2, tf.float32)

    daah_step = tf.function(model.train_step)
    plain_optimizer = keras.optimizers.Adam(1e-4)
    variables = model.trainable_variables
    plain_optimizer.build(variables)

    @tf.function
    def plain_step(data):
        with tf.GradientTape() as tape:
            outputs = model(data[0], training=True)
            loss = model.compute_losses(outputs, data[1])["loss"]
        plain_optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    def timed(step):
        start = time.perf_counter()
        for _ in range(steps):
            result = step((inputs, labels))
        tf.nest.map_structure(lambda t: t.numpy(), result)  # wait for the last step
        return (time.perf_counter() - start) / steps

    timed(daah_step), timed(plain_step)  # trace and warm up
    daah, plain = [], []
    for _ in range(repeats):
        daah.append(timed(daah_step))
        plain.append(timed(plain_step))
    ratios = [d / p for d, p in zip(daah, plain, strict=True)]
    print(json.dumps({
        "pairs_per_s": batch_size / float(np.median(daah)),
        "plain_pairs_per_s": batch_size / float(np.median(plain)),
        "ratio": float(np.median(ratios)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=5, help="timings per step kind")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.steps, args.repeats, args.batch_size)
        return
    rows = []
    print(f"{'path':<22}{'update':<14}{'pairs/s':>9}{'plain pairs/s':>15}"
          f"{'DAAH/plain':>12}{'peak RSS MB':>13}")
    for path in PATHS:
        for update in ("alternating", "simultaneous"):
            command = [sys.executable, os.path.abspath(__file__), "--child", path, update,
                       f"--steps={args.steps}", f"--repeats={args.repeats}",
                       f"--batch_size={args.batch_size}"]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            row = json.loads(output.strip().splitlines()[-1])
            rows.append((path, update, row))
            print(f"{path:<22}{update:<14}{row['pairs_per_s']:>9.1f}"
                  f"{row['plain_pairs_per_s']:>15.1f}{row['ratio']:>12.2f}"
                  f"{row['peak_rss_mb']:>13.0f}", flush=True)
    headline = next(r for p, u, r in rows if p.startswith("small_cnn") and u == "alternating")
    print(f"minimax_over_single={headline['ratio']:.2f}")


if __name__ == "__main__":
    main()
