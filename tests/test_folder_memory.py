"""A user's folder dataset (pairs.jsonl + image files) trains end to end, and its images are
streamed: the peak resident memory of a training run does not grow with the number of images.

The slow test trains the same model for the same steps on 2,000 and on 20,000 JPEGs of
128x128 and compares the two runs' peak RSS: it may grow by less than a fifth of what the extra
18,000 images take decoded (18,000 x 128 x 128 x 3 bytes = 844 MiB, so < 169 MiB). Holding every
image in memory, decoded at the files' size (844 MiB) or as float32 at the 32x32 the model sees
(211 MiB), would exceed that; a uint8 copy at 32x32 (53 MiB) would not be caught.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from daah_tf.saved_model_layout import latest_saved_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_LABELS = 10
# Peak RSS may grow by at most this share of the decoded size of the extra images.
GROWTH_LIMIT = 0.2


def write_folder_dataset(root, count, side=64, seed=0, num_query=None):
    """DIR/pairs.jsonl and `count` JPEGs under DIR/photos/.

    Without num_query no row has a split field (the default split); with it, the first
    num_query rows are "query" and the rest "train" (database = training rows). Each image is a
    label-coloured square on blocky noise, each text a label word among noise words, so there
    is something to learn; none of it is kept in memory.
    """
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(NUM_LABELS, 3))
    os.makedirs(os.path.join(root, "photos"), exist_ok=True)
    with open(os.path.join(root, "pairs.jsonl"), "w", encoding="utf-8") as pairs:
        for index in range(count):
            labels = rng.choice(NUM_LABELS, size=1 + int(rng.random() < 0.3), replace=False)
            block = max(1, side // 8)  # noise on an 8x8 grid of blocks: small JPEGs
            grid = rng.integers(0, 120, size=(side // block, side // block, 3), dtype=np.uint8)
            pixels = np.repeat(np.repeat(grid, block, 0), block, 1)
            y, x = rng.integers(0, side // 2, size=2)
            pixels[y:y + side // 2, x:x + side // 2] = colours[labels[0]]
            name = f"photos/{index:06d}.jpg"
            Image.fromarray(pixels).save(os.path.join(root, name), quality=85)
            words = [f"topic{label}" for label in labels] + [
                f"noise{w}" for w in rng.integers(0, 200, size=5)]
            rng.shuffle(words)
            row = {"image": name, "text": " ".join(words),
                   "labels": [f"label{label}" for label in labels]}
            if num_query is not None:
                row["split"] = "query" if index < num_query else "train"
            pairs.write(json.dumps(row) + "\n")


def test_small_folder_dataset_trains_end_to_end(tmp_path):
    from daah_tf.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from daah_tf.data.registry import load_dataset
    from daah_tf.training.trainer import train_and_evaluate

    data_dir = str(tmp_path / "data")
    write_folder_dataset(data_dir, 300)
    data = load_dataset("folder", data_dir)
    assert len(data) == 300 and data.image_kind == "paths" and data.text_kind == "raw"
    model_dir = str(tmp_path / "run")
    config = RunConfig(
        data=DataConfig(dataset="folder", data_dir=data_dir, image_size=32, batch_size=32,
                        text_vocab_size=300),
        model=ModelConfig(bits=16, cnn_filters=(4, 8), image_hidden_units=(16, 16),
                          text_units=(16, 16)),
        train=TrainConfig(model_dir=model_dir, epochs=1, max_steps_per_epoch=3, verbose=0),
    )
    results = train_and_evaluate(config, "", print_fn=lambda *_: None)
    assert results["dataset"] == "folder" and results["steps"] == 3
    assert results["num_query"] == 30 and results["num_database"] == 270
    for key in ("i2t_map", "t2i_map"):
        assert 0.0 <= results[key] <= 1.0
    assert os.path.exists(os.path.join(model_dir, "text_featurizer.json"))
    assert os.path.exists(os.path.join(latest_saved_model(model_dir), "saved_model.pb"))


# Runs the training command as its own child and reports that child's peak RSS: a wrapper
# process, so that RUSAGE_CHILDREN sees the training run alone, not other tests' children.
_MEASURE = textwrap.dedent("""
    import json, resource, subprocess, sys
    done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: kilobytes
    print(json.dumps({"rc": done.returncode, "peak_rss_mb": peak_kb / 1024,
                      "out": done.stdout[-3000:], "err": done.stderr[-3000:]}))
""")


def _peak_rss_of_training(tmp_path, count, side, num_query):
    """Writes a folder dataset of `count` images and trains on it in a child process: returns
    (peak RSS in MB, metrics.json). Same model, steps and query set whatever the count."""
    data_dir = str(tmp_path / f"data{count}")
    write_folder_dataset(data_dir, count, side=side, num_query=num_query)
    model_dir = str(tmp_path / f"run{count}")
    command = [sys.executable, "-m", "daah_tf.train", "--dataset=folder",
               f"--data_dir={data_dir}", f"--model_dir={model_dir}", "--image_size=32",
               "--epochs=2", "--max_steps_per_epoch=40", "--batch_size=32", "--bits=16",
               "--cnn_filters=8,16", "--image_hidden_units=64,64", "--text_units=64,32",
               "--verbose=2"]
    result = subprocess.run([sys.executable, "-c", _MEASURE, *command], cwd=REPO,
                            capture_output=True, text=True, timeout=3000,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["rc"] == 0, report["out"] + report["err"]
    metrics = json.load(open(os.path.join(model_dir, "metrics.json")))
    return report["peak_rss_mb"], metrics


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_number_of_images(tmp_path):
    side, small, large, num_query = 128, 2_000, 20_000, 200
    small_rss, small_metrics = _peak_rss_of_training(tmp_path, small, side, num_query)
    large_rss, large_metrics = _peak_rss_of_training(tmp_path, large, side, num_query)
    decoded_extra_mb = (large - small) * side * side * 3 / 2**20
    growth = large_rss - small_rss
    print(f"\npeak RSS: {small:,} images {small_rss:.0f} MiB, {large:,} images "
          f"{large_rss:.0f} MiB (growth {growth:.0f} MiB; the extra images decoded: "
          f"{decoded_extra_mb:.0f} MiB, limit {GROWTH_LIMIT * decoded_extra_mb:.0f} MiB)")
    # Both runs train 2 epochs of 40 steps, validate on 10% of the training rows against the
    # rest, and query the same 200 images against every training row (1,800 and 19,800 images
    # read and encoded).
    for metrics, count in ((small_metrics, small), (large_metrics, large)):
        assert metrics["steps"] == 80 and metrics["num_query"] == num_query
        assert metrics["num_database"] == count - num_query
    assert growth < GROWTH_LIMIT * decoded_extra_mb, (small_rss, large_rss, decoded_extra_mb)
