"""Training-speed benchmark: pairs/s and peak memory of the DAAH minimax step.

    python tools/bench_train.py [--steps=8] [--repeats=5] [--batch_size=64]

For each input path (small_cnn end to end at 64x64, a cached 7x7x512 feature map, a 128-d
vector) one child process builds three models from the same seed and times their train steps
interleaved, repeat after repeat (so all see the same machine load): DAAH with alternating
updates (the paper's schedule), DAAH with simultaneous updates, and the baseline, a plain hashing
network WITHOUT attention (`--attention=none`: the same encoders and hash heads, L_ret only, one
optimizer). It prints per path the median pairs/s of each and the median ratio of each DAAH step's
time to the baseline's with its spread (min-max over the repeats), then as its last line
`minimax_over_plain=<x>` for small_cnn end to end with alternating updates.

A benchmark, not a test: the numbers depend on the machine; compare ratios from one run, and
read the spread before the median.
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
    # Every block pooled (an 8x8 map), as when the README's numbers were measured.
    "small_cnn 64x64": ((64, 64, 3), {"image_backbone": "small_cnn",
                                      "cnn_filters": (32, 64, 128),
                                      "cnn_pool_last_block": True,
                                      "image_hidden_units": (512, 512)}),
    "precomputed 7x7x512": ((7, 7, 512), {"image_backbone": "precomputed",
                                          "image_hidden_units": (1024, 1024)}),
    "vector 128": ((128,), {"image_backbone": "precomputed",
                            "image_hidden_units": (512, 512)}),
}
TEXT_DIM = 1000


STEPS = ("alternating", "simultaneous", "no_attention")


def _child(path, steps, repeats, batch_size):
    """Runs in a subprocess: times the three steps interleaved, prints one JSON line."""
    import keras
    import numpy as np
    import tensorflow as tf

    from daah_tf.config import ModelConfig
    from daah_tf.models import build_model

    image_shape, overrides = PATHS[path]

    def step_of(kind):
        keras.utils.set_random_seed(0)
        if kind == "no_attention":
            config = ModelConfig(bits=32, text_units=(512, 256), attention="none",
                                 adversarial=False, **overrides)
        else:
            config = ModelConfig(bits=32, text_units=(512, 256), update=kind, **overrides)
        model = build_model(config, image_shape, TEXT_DIM)
        model.compile(hash_optimizer=keras.optimizers.Adam(1e-4),
                      attention_optimizer=keras.optimizers.Adam(1e-4))
        return tf.function(model.train_step)

    rng = np.random.default_rng(0)
    scale = 255.0 if path.startswith("small_cnn") else 1.0
    inputs = {"image": tf.constant(rng.uniform(0, scale, (batch_size, *image_shape)), tf.float32),
              "text": tf.constant(rng.integers(0, 2, (batch_size, TEXT_DIM)), tf.float32)}
    labels = tf.constant(rng.random((batch_size, 8)) < 0.2, tf.float32)
    functions = {kind: step_of(kind) for kind in STEPS}

    def timed(step):
        start = time.perf_counter()
        for _ in range(steps):
            result = step((inputs, labels))
        tf.nest.map_structure(lambda t: t.numpy(), result)  # wait for the last step
        return (time.perf_counter() - start) / steps

    for function in functions.values():
        timed(function)  # trace and warm up
    seconds = {kind: [] for kind in STEPS}
    for _ in range(repeats):
        for kind in STEPS:
            seconds[kind].append(timed(functions[kind]))
    row = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    for kind in STEPS:
        row[f"{kind}_pairs_per_s"] = batch_size / float(np.median(seconds[kind]))
    for kind in STEPS[:2]:
        ratios = [d / p for d, p in zip(seconds[kind], seconds["no_attention"], strict=True)]
        row[f"{kind}_ratio"] = float(np.median(ratios))
        row[f"{kind}_spread"] = [float(min(ratios)), float(max(ratios))]
    print(json.dumps(row))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=5, help="timings per step kind")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.steps, args.repeats, args.batch_size)
        return
    rows = {}
    print(f"{'path':<22}{'no-attention pairs/s':>21}{'alternating pairs/s':>21}"
          f"{'x (spread)':>18}{'simultaneous pairs/s':>22}{'x (spread)':>18}{'peak RSS MB':>13}")
    for path in PATHS:
        command = [sys.executable, os.path.abspath(__file__), "--child", path,
                   f"--steps={args.steps}", f"--repeats={args.repeats}",
                   f"--batch_size={args.batch_size}"]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        row = rows[path] = json.loads(output.strip().splitlines()[-1])
        cells = "".join(
            f"{row[f'{kind}_pairs_per_s']:>21.1f}{row[f'{kind}_ratio']:>8.2f} "
            f"({row[f'{kind}_spread'][0]:.2f}-{row[f'{kind}_spread'][1]:.2f})"
            for kind in STEPS[:2])
        print(f"{path:<22}{row['no_attention_pairs_per_s']:>21.1f}{cells}"
              f"{row['peak_rss_mb']:>13.0f}", flush=True)
    print(f"minimax_over_plain={rows['small_cnn 64x64']['alternating_ratio']:.2f}")


if __name__ == "__main__":
    main()
