"""The folder reader (DIR/pairs.jsonl): good data, every kind of bad row, split semantics,
image verification, and fuzzed lines (loads or raises DatasetError, nothing else)."""

# A user's folder dataset (pairs.jsonl + image files) trains end to end, and its images are
# streamed: the peak resident memory of a training run does not grow with the number of images.
#
# The slow test trains the same model for the same steps on 2,000 and on 20,000 JPEGs of
# 128x128 and compares the two runs' peak RSS: it may grow by less than a fifth of what the extra
# 18,000 images take decoded (18,000 x 128 x 128 x 3 bytes = 844 MiB, so < 169 MiB). Holding every
# image in memory, decoded at the files' size (844 MiB) or as float32 at the 32x32 the model sees
# (211 MiB), would exceed that; a uint8 copy at 32x32 (53 MiB) would not be caught.
#

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from daah_tf.data.base import DatasetError
from daah_tf.data.folder import load_folder, verify_images
from daah_tf.saved_model_layout import latest_saved_model


def write_image(path, kind="jpg", seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG" if kind == "jpg" else "PNG")


def write_pairs(directory, rows):
    """rows: dicts (dumped as JSON) or str (written as is)."""
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)
             for row in rows]
    (directory / "pairs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def good_rows(directory, count=10, split=None):
    rows = []
    for index in range(count):
        kind = "jpg" if index % 2 else "png"
        name = f"photos/{index:04d}.{kind}"
        write_image(str(directory / name), kind, seed=index)
        row = {"image": name, "text": f"ein Hund am Strand {index} 海滩",
               "labels": ["dog", "beach"] if index % 3 else ["cat"]}
        if split:
            row["split"] = split[index] if isinstance(split, list) else split
        rows.append(row)
    return rows


@pytest.fixture
def folder(tmp_path):
    write_pairs(tmp_path, good_rows(tmp_path))
    return tmp_path


def test_loads_good_folder(folder):
    dataset = load_folder(str(folder), seed=0)
    assert len(dataset) == 10 and dataset.image_kind == "paths" and dataset.text_kind == "raw"
    assert dataset.label_names == ["beach", "cat", "dog"]
    np.testing.assert_array_equal(dataset.labels[0], [0, 1, 0])
    np.testing.assert_array_equal(dataset.labels[1], [1, 0, 1])
    assert dataset.images[0] == str(folder / "photos" / "0000.png")
    assert all(os.path.isabs(path) for path in dataset.images)
    assert dataset.texts[3] == "ein Hund am Strand 3 海滩"
    assert dataset.extras["bad_rows"] == 0
    np.testing.assert_array_equal(dataset.extras["line_numbers"], np.arange(1, 11))


def test_default_split_ratios_and_seed(folder):
    dataset = load_folder(str(folder), seed=0)
    splits = dataset.splits
    assert [len(splits[s]) for s in ("query", "database", "train")] == [1, 9, 4]
    assert set(splits["train"]) <= set(splits["database"])
    assert not set(splits["query"]) & set(splits["database"])
    again = load_folder(str(folder), seed=0)
    np.testing.assert_array_equal(splits["train"], again.splits["train"])


def test_given_splits_semantics(tmp_path):
    names = ["query", "query", "database", "database", "train", "train", "train",
             "database", "train", "query"]
    write_pairs(tmp_path, good_rows(tmp_path, split=names))
    splits = load_folder(str(tmp_path), seed=0).splits
    np.testing.assert_array_equal(splits["query"], [0, 1, 9])
    np.testing.assert_array_equal(splits["database"], [2, 3, 4, 5, 6, 7, 8])  # train included
    np.testing.assert_array_equal(splits["train"], [4, 5, 6, 8])  # never database-only rows


def test_given_splits_need_query_and_train(tmp_path):
    write_pairs(tmp_path, good_rows(tmp_path, split="train"))
    with pytest.raises(DatasetError, match="no row has split 'query'"):
        load_folder(str(tmp_path), seed=0)


def test_split_on_some_rows_only(tmp_path):
    rows = good_rows(tmp_path, split="train")
    del rows[4]["split"]
    write_pairs(tmp_path, rows)
    with pytest.raises(DatasetError, match=r"pairs\.jsonl:5: no split"):
        load_folder(str(tmp_path), seed=0)


def bad_rows_folder(directory):
    """Good rows with one bad row of each kind; returns {line: what is wrong}."""
    rows = good_rows(directory, count=6)
    (directory / "photos" / "truncated.jpg").write_bytes(
        (directory / "photos" / "0001.jpg").read_bytes()[:300])
    (directory / "photos" / "text.jpg").write_text("I am not a JPEG")
    bad = {
        '{"image": "photos/0000.png", "text": "broken',
        json.dumps({"image": "photos/0000.png", "text": "no labels"}),
        json.dumps({"image": "photos/0000.png", "text": "empty labels", "labels": []}),
        json.dumps({"image": "../outside.jpg", "text": "escape", "labels": ["x"]}),
        json.dumps({"image": "photos/absent.jpg", "text": "missing", "labels": ["x"]}),
        json.dumps({"image": "photos/0000.png", "text": 5, "labels": ["x"]}),
        json.dumps({"image": "photos/0000.png", "text": "t", "labels": ["x"], "split": "dev"}),
        "[1, 2, 3]",
    }
    write_pairs(directory, rows + sorted(bad) + [
        json.dumps({"image": "photos/truncated.jpg", "text": "truncated", "labels": ["x"]}),
        json.dumps({"image": "photos/text.jpg", "text": "not an image", "labels": ["x"]})])
    return len(bad)


@pytest.mark.parametrize("row, match", [
    ('{"image": "a.png", "text": ', "invalid JSON"),
    ('{"image": "a.png", "text": "t"}', r"missing key\(s\) \['labels'\]"),
    ('{"image": "a.png", "text": "t", "labels": []}', "'labels' is empty"),
    ('{"image": "a.png", "text": "t", "labels": "dog"}', "must be a list"),
    ('{"image": "../a.png", "text": "t", "labels": ["dog"]}', "outside the data folder"),
    ('{"image": "/etc/passwd", "text": "t", "labels": ["dog"]}', "outside the data folder"),
    ('{"image": "b.png", "text": "t", "labels": ["dog"]}', "image file not found"),
    ('{"image": "a.png", "text": "t", "labels": ["dog"], "split": "dev"}', "unknown split"),
    ('{"image": "a.png", "text": "  ", "labels": ["dog"]}', "'text' is empty"),
    ('"just a string"', "expected a JSON object"),
])
def test_each_bad_row_names_file_and_line(tmp_path, row, match):
    write_image(str(tmp_path / "a.png"), "png")
    good = '{"image": "a.png", "text": "t", "labels": ["dog"]}'
    write_pairs(tmp_path, [good, good, row, good])
    with pytest.raises(DatasetError, match=match) as error:
        load_folder(str(tmp_path), seed=0)
    assert f"{tmp_path / 'pairs.jsonl'}:3:" in str(error.value)
    assert "Traceback" not in str(error.value)


def test_invalid_utf8_line(tmp_path):
    write_image(str(tmp_path / "a.png"), "png")
    good = b'{"image": "a.png", "text": "t", "labels": ["dog"]}\n'
    (tmp_path / "pairs.jsonl").write_bytes(good + b'{"text": "\xff"}\n' + good)
    with pytest.raises(DatasetError, match=r"pairs\.jsonl:2: not valid UTF-8"):
        load_folder(str(tmp_path), seed=0)


def test_skip_bad_rows_counts_and_warns(tmp_path):
    num_bad = bad_rows_folder(tmp_path)
    with pytest.raises(DatasetError, match=r"pairs\.jsonl:7: .*more bad row"):
        load_folder(str(tmp_path), seed=0)
    with pytest.warns(UserWarning, match=f"skipped {num_bad} bad row"):
        dataset = load_folder(str(tmp_path), seed=0, skip_bad_rows=True)
    # the two broken images open as paths: only verify_images can tell
    assert len(dataset) == 8 and dataset.extras["bad_rows"] == num_bad
    assert [line for line, _ in dataset.extras["skipped_rows"]] == list(range(7, 15))


def test_verify_images_flag_finds_broken_files(tmp_path):
    num_bad = bad_rows_folder(tmp_path)
    with pytest.warns(UserWarning, match=f"skipped {num_bad + 2} bad row"):
        dataset = load_folder(str(tmp_path), seed=0, skip_bad_rows=True, verify_images=True)
    assert len(dataset) == 6
    reasons = dict(dataset.extras["skipped_rows"])
    assert "does not decode" in reasons[15] and "does not decode" in reasons[16]


def test_verify_images_function(tmp_path):
    write_image(str(tmp_path / "good.jpg"))
    (tmp_path / "bad.jpg").write_bytes((tmp_path / "good.jpg").read_bytes()[:200])
    (tmp_path / "text.jpg").write_text("hello")
    results = verify_images([str(tmp_path / n) for n in ("good.jpg", "bad.jpg", "text.jpg",
                                                         "absent.jpg")])
    assert results[0] is None and all(results[1:])


def test_missing_pairs_file_and_empty_file(tmp_path):
    with pytest.raises(DatasetError, match=r"pairs\.jsonl: file not found"):
        load_folder(str(tmp_path), seed=0)
    (tmp_path / "pairs.jsonl").write_text("\n\n")
    with pytest.raises(DatasetError, match="no valid rows"):
        load_folder(str(tmp_path), seed=0)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6)


IMAGES = st.sampled_from(["a.png", "./a.png", "sub/../a.png", "../a.png", "/etc/passwd", "",
                          "b.png", ".", "a.png\x00", "\ud800"]) | JSON_VALUES


LABELS = st.lists(st.sampled_from(["dog", "cat", "", " ", "\ud800"]) | JSON_VALUES,
                  max_size=3) | JSON_VALUES


SPLIT = st.sampled_from(["query", "database", "train", "test", None]) | JSON_VALUES


ROW = st.fixed_dictionaries({}, optional={"image": IMAGES, "text": st.text() | JSON_VALUES,
                                          "labels": LABELS, "split": SPLIT})


LINE = ROW.map(json.dumps) | st.text(max_size=20) | JSON_VALUES.map(json.dumps)


@settings(max_examples=50, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=st.lists(LINE, min_size=1, max_size=5), skip=st.booleans(), seed=st.integers(0, 9))
def test_fuzzed_lines_load_or_raise_dataset_error(lines, skip, seed):
    with tempfile.TemporaryDirectory() as directory:
        write_image(os.path.join(directory, "a.png"), "png")
        good = [json.dumps({"image": "a.png", "text": "t", "labels": ["dog"]})] * 2
        with open(os.path.join(directory, "pairs.jsonl"), "w", encoding="utf-8",
                  errors="surrogatepass") as handle:
            handle.write("\n".join(good + lines) + "\n")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # skipped-row warnings are expected here
                dataset = load_folder(directory, seed=seed, skip_bad_rows=skip)
        except DatasetError:
            return
        assert len(dataset) >= 2 and dataset.labels.shape[0] == len(dataset)
        assert all(path == os.path.join(directory, "a.png") for path in dataset.images)


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
