"""Benchmark: training steps/s from a feature cache against training end to end, same data.

    python tools/bench_cache.py [--repeats=3] [--skip_vgg]

For each backbone it builds the synthetic dataset, times DAAH training steps (input pipeline
included) in three modes, and the one-off cost of writing the cache:

    frozen      end to end with the backbone frozen: decode/augment pixels, the CNN forward
                only (no backbone gradient): the same model the cache trains, the fair baseline
    cache       reading the float16 feature maps from the memory-mapped cache
    trainable   end to end, the backbone trained too (a different model; shown separately)

The modes are timed in turn in each repeat, so all see the same machine load; the table shows
medians and, above it, the spread (min, max). Cases:

    small_cnn   64x64, 2,000 synthetic pairs, batch 32
    vgg19       224x224, weights none (ImageNet weights cost the same time), 48 pairs, batch 4

Its last line is `cache_speedup=<x>` (vgg19 when measured, else small_cnn): frozen end-to-end
seconds per step over cached seconds per step, what the cache saves for the same model. The
`trainable/cache` column compares against training the backbone too, which is a different model
(and usually a different accuracy). A benchmark, not a test: the numbers depend on the machine;
compare ratios from one run.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CASES = {
    # name: backbone, image size, pairs, batch, timed steps, warm-up steps, cnn filters
    "small_cnn": dict(backbone="small_cnn", size=64, pairs=2000, batch=32, steps=20, warmup=3,
                      filters=(32, 64, 128)),
    "vgg19": dict(backbone="vgg19", size=224, pairs=48, batch=4, steps=3, warmup=1,
                  filters=(32, 64, 128)),
}


def _model(case, image_shape, text_dim, precomputed, frozen=False):
    import keras

    from daah_tf.config import ModelConfig
    from daah_tf.models import build_model

    config = ModelConfig(bits=32, image_backbone="precomputed" if precomputed else case["backbone"],
                         image_weights="none", cnn_filters=case["filters"],
                         cnn_pool_last_block=True,  # as the README's numbers were measured
                         image_hidden_units=(512, 512), text_units=(512, 256))
    model = build_model(config, image_shape, text_dim)
    if frozen:  # before compile: the hash optimizer is built without the backbone's weights
        model.image_encoder.trainable = False
    model.compile(hash_optimizer=keras.optimizers.Adam(1e-3),
                  attention_optimizer=keras.optimizers.Adam(1e-3))
    return model


def _timer(model, pipeline, steps, warmup):
    """A () -> seconds per step, after tracing and warming the pipeline once."""
    model.fit(pipeline, epochs=1, steps_per_epoch=warmup, verbose=0, shuffle=False)

    def time_steps():
        started = time.perf_counter()
        # fit makes a fresh iterator each call: the time includes filling the pipeline, as in
        # the first steps of every epoch of a real run
        model.fit(pipeline, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
        return (time.perf_counter() - started) / steps

    return time_steps


def run_case(case, repeats):
    """{"frozen", "cache", "trainable": s/step, "cache_build": s, ...} medians over repeats."""
    import keras

    from daah_tf.data.feature_cache import load_feature_cache, write_feature_cache
    from daah_tf.data.pipeline import make_pipeline
    from daah_tf.data.synthetic import make_synthetic
    from daah_tf.data.text_featurizer import TextFeaturizer
    from daah_tf.models.backbones import build_backbone

    keras.utils.set_random_seed(0)
    size, batch = case["size"], case["batch"]
    data = make_synthetic(num_pairs=case["pairs"], num_classes=8, image_size=size, seed=0,
                          num_query=max(4, case["pairs"] // 10))
    train = data.splits["train"]
    featurizer = TextFeaturizer.fit(data.texts[train], vocab_size=1000)
    epochs = 1 + (case["warmup"] + case["steps"]) * (repeats + 1) * batch // len(train)

    def pipeline(source):
        return make_pipeline(source, train, batch, training=True, seed=0, last_epoch=epochs,
                             text_featurizer=featurizer, image_size=size)

    pixels = (size, size, 3)
    frozen = _model(case, pixels, featurizer.dim, precomputed=False, frozen=True)
    trainable = _model(case, pixels, featurizer.dim, precomputed=False)
    with tempfile.TemporaryDirectory() as folder:
        encoder = build_backbone(case["backbone"], "none", size, case["filters"], seed=0)
        started = time.perf_counter()
        write_feature_cache(data, os.path.join(folder, "cache"), encoder, size,
                            batch_size=max(batch, 16))
        cache_build = time.perf_counter() - started
        cached = load_feature_cache(os.path.join(folder, "cache"))
        from_cache = _model(case, cached.image_shape, featurizer.dim, precomputed=True)
        timers = {"frozen": _timer(frozen, pipeline(data), case["steps"], case["warmup"]),
                  "cache": _timer(from_cache, pipeline(cached), case["steps"], case["warmup"]),
                  "trainable": _timer(trainable, pipeline(data), case["steps"], case["warmup"])}
        times = {key: [] for key in timers}
        for _ in range(repeats):
            for key, timer in timers.items():  # in turn: all see the same machine load
                times[key].append(timer())
    result = {key: statistics.median(values) for key, values in times.items()}
    result.update(cache_build=cache_build, rows=len(data), feature_shape=cached.image_shape,
                  spread={key: (min(v), max(v)) for key, v in times.items()})
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip_vgg", action="store_true", help="small_cnn only (fast)")
    args = parser.parse_args()
    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, repeats={args.repeats}")
    names = ["small_cnn"] + ([] if args.skip_vgg else ["vgg19"])
    results = {}
    header = (f"{'backbone':<10} {'input':>9} {'batch':>5} {'features':>10} "
              f"{'frozen steps/s':>15} {'cache steps/s':>14} {'frozen/cache':>13} "
              f"{'trainable steps/s':>18} {'trainable/cache':>16} {'cache build':>12}")
    for name in names:
        case = CASES[name]
        results[name] = result = run_case(case, args.repeats)
        print(f"  {name}: s/step (min, max): " + ", ".join(
            f"{key} {low:.3f}-{high:.3f}" for key, (low, high) in result["spread"].items()),
            flush=True)
    print(header)
    print("-" * len(header))
    for name, result in results.items():
        case = CASES[name]
        shape = "x".join(str(d) for d in result["feature_shape"])
        print(f"{name:<10} {case['size']:>5}x{case['size']:<3} {case['batch']:>5} {shape:>10} "
              f"{1 / result['frozen']:>15.2f} {1 / result['cache']:>14.2f} "
              f"{result['frozen'] / result['cache']:>12.1f}x "
              f"{1 / result['trainable']:>18.2f} {result['trainable'] / result['cache']:>15.1f}x "
              f"{result['cache_build']:>9.1f} s ({result['rows']} images)")
    last = "vgg19" if "vgg19" in results else "small_cnn"
    print(f"cache_speedup={results[last]['frozen'] / results[last]['cache']:.1f}")


if __name__ == "__main__":
    main()
