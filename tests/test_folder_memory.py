"""A user's folder dataset (pairs.jsonl + image files) trains end to end, and its images are
streamed: 20,000 JPEGs train in a child process whose peak resident memory stays under 4 GB."""

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
PEAK_RSS_LIMIT_MB = 4096


def write_folder_dataset(root, count, side=64, seed=0):
    """DIR/pairs.jsonl and `count` JPEGs under DIR/photos/ (no split field: default split).

    Each image is a label-coloured square on noise, each text a label word among noise words,
    so there is something to learn; none of it is kept in memory.
    """
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(NUM_LABELS, 3))
    os.makedirs(os.path.join(root, "photos"), exist_ok=True)
    with open(os.path.join(root, "pairs.jsonl"), "w", encoding="utf-8") as pairs:
        for index in range(count):
            labels = rng.choice(NUM_LABELS, size=1 + int(rng.random() < 0.3), replace=False)
            pixels = rng.integers(0, 120, size=(side, side, 3), dtype=np.uint8)
            y, x = rng.integers(0, side // 2, size=2)
            pixels[y:y + side // 2, x:x + side // 2] = colours[labels[0]]
            name = f"photos/{index:06d}.jpg"
            Image.fromarray(pixels).save(os.path.join(root, name), quality=85)
            words = [f"topic{label}" for label in labels] + [
                f"noise{w}" for w in rng.integers(0, 200, size=5)]
            rng.shuffle(words)
            pairs.write(json.dumps({"image": name, "text": " ".join(words),
                                    "labels": [f"label{label}" for label in labels]}) + "\n")


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


@pytest.mark.slow
def test_twenty_thousand_images_stream_in_bounded_memory(tmp_path):
    data_dir = str(tmp_path / "data")
    write_folder_dataset(data_dir, 20_000)
    model_dir = str(tmp_path / "run")
    command = [sys.executable, "-m", "daah_tf.train", "--dataset=folder",
               f"--data_dir={data_dir}", f"--model_dir={model_dir}", "--image_size=32",
               "--epochs=2", "--max_steps_per_epoch=200", "--batch_size=32", "--bits=16",
               "--cnn_filters=8,16", "--image_hidden_units=64,64", "--text_units=64,32",
               "--verbose=2"]
    result = subprocess.run([sys.executable, "-c", _MEASURE, *command], cwd=REPO,
                            capture_output=True, text=True, timeout=3000,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["rc"] == 0, report["out"] + report["err"]
    print(f"\npeak RSS of the training run on 20,000 images: {report['peak_rss_mb']:.0f} MB")
    metrics = json.load(open(os.path.join(model_dir, "metrics.json")))
    # 8,100 training pairs after validation: two epochs of 200 of their 253 batches
    assert metrics["steps"] == 400 and metrics["num_database"] == 18_000
    assert report["peak_rss_mb"] < PEAK_RSS_LIMIT_MB
