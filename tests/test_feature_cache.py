"""The feature cache: tools/cache_features.py on a small synthetic dataset, features equal to the
backbone's output, training from the cache, and every kind of damaged cache refused with a
DatasetError naming the file."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from daah_tf.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from daah_tf.data.base import DatasetError, PairedDataset
from daah_tf.data.feature_cache import (
    FEATURES_FILE,
    LABELS_FILE,
    MANIFEST_FILE,
    TEXTS_BOW_FILE,
    load_feature_cache,
    write_feature_cache,
)
from daah_tf.data.synthetic import make_synthetic
from daah_tf.models.backbones import build_backbone
from daah_tf.saved_model_layout import latest_saved_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The smoke run's data and image network (flags/smoke.cfg).
PAIRS, CLASSES, SIZE, FILTERS = 240, 4, 16, (4, 8)


@pytest.fixture(scope="module")
def cli_cache(tmp_path_factory):
    """A cache of the smoke run's synthetic data, written by the command-line tool."""
    out = str(tmp_path_factory.mktemp("cache") / "synthetic_small_cnn")
    command = [sys.executable, os.path.join(REPO, "tools", "cache_features.py"),
               "--dataset=synthetic", f"--synthetic_pairs={PAIRS}",
               f"--synthetic_classes={CLASSES}", f"--image_size={SIZE}",
               "--image_backbone=small_cnn", "--image_weights=none",
               f"--cnn_filters={','.join(map(str, FILTERS))}", "--cnn_pool_last_block",
               "--batch_size=50",
               f"--out={out}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--feature_cache=" in result.stdout
    return out


def test_cli_cache_holds_the_backbones_features(cli_cache):
    manifest = json.load(open(os.path.join(cli_cache, MANIFEST_FILE)))
    assert manifest["format_version"] == 1 and manifest["dataset"] == "synthetic"
    assert manifest["backbone"] == "small_cnn" and manifest["weights"] == "none"
    assert manifest["image_size"] == SIZE and manifest["rows"] == PAIRS
    assert manifest["feature_shape"] == [4, 4, 8] and manifest["feature_dtype"] == "float16"
    assert manifest["cnn_filters"] == list(FILTERS) and manifest["cnn_pool_last_block"] is True
    # no temporary folder left beside the cache
    assert os.listdir(os.path.dirname(cli_cache)) == [os.path.basename(cli_cache)]

    data = load_feature_cache(cli_cache, dataset="synthetic")
    original = make_synthetic(num_pairs=PAIRS, num_classes=CLASSES, image_size=SIZE, seed=0)
    assert data.image_kind == "features" and data.text_kind == "raw"
    assert isinstance(data.images, np.memmap) and data.images.dtype == np.float16
    assert data.images.shape == (PAIRS, 4, 4, 8)
    np.testing.assert_array_equal(data.labels, original.labels)
    assert data.label_names == list(original.label_names)
    assert list(data.texts) == list(original.texts)
    for name in ("query", "database", "train"):
        np.testing.assert_array_equal(data.splits[name], original.splits[name])

    # The same seed rebuilds the same random backbone: its output on the images, in float16.
    encoder = build_backbone("small_cnn", "none", SIZE, FILTERS, seed=0)
    expected = encoder(original.images.astype(np.float32), training=False).numpy()
    np.testing.assert_allclose(np.asarray(data.images, np.float32), expected,
                               rtol=2 ** -10, atol=1e-6)
    assert np.abs(expected).max() > 0.1  # not a trivially zero feature map


def test_training_from_the_cache(cli_cache, tmp_path):
    from daah_tf.training.trainer import train_and_evaluate

    model_dir = str(tmp_path / "run")
    config = RunConfig(
        data=DataConfig(feature_cache=cli_cache, image_size=SIZE, batch_size=32,
                        text_vocab_size=200),
        model=ModelConfig(bits=16, image_backbone="precomputed", cnn_filters=FILTERS,
                          image_hidden_units=(16, 16), text_units=(16, 16)),
        train=TrainConfig(model_dir=model_dir, epochs=1, max_steps_per_epoch=3, verbose=0),
    )
    results = train_and_evaluate(config, "", print_fn=lambda *_: None)
    assert results["dataset"] == "synthetic" and results["epochs_trained"] == 1
    assert 0.0 <= results["i2t_map"] <= 1.0 and results["steps"] == 3
    inputs = json.load(open(os.path.join(model_dir, "inputs.json")))
    assert inputs["image_kind"] == "features" and inputs["image_shape"] == [4, 4, 8]
    assert os.path.exists(os.path.join(latest_saved_model(model_dir), "saved_model.pb"))


# --------------------------------------------------------------------------------------------
# The library on its own: small in-process caches
# --------------------------------------------------------------------------------------------

def bow_dataset(rows=24, side=8):
    """Pixels with bag-of-words text (the shape of MIRFLICKR / NUS-WIDE / IAPR)."""
    rng = np.random.default_rng(0)
    index = np.arange(rows, dtype=np.int64)
    return PairedDataset(
        name="toy_bow", images=rng.integers(0, 256, (rows, side, side, 3), dtype=np.uint8),
        image_kind="pixels", texts=rng.random((rows, 6)).astype(np.float32), text_kind="bow",
        labels=(rng.random((rows, 3)) < 0.5).astype(np.float32), label_names=["a", "b", "c"],
        splits={"query": index[:4], "database": index[4:], "train": index[4:14]},
        vocabulary=[f"w{i}" for i in range(6)],
    )


@pytest.fixture(scope="module")
def small_encoder():
    return build_backbone("small_cnn", "none", 8, (4,), seed=1)


@pytest.fixture
def bow_cache(tmp_path, small_encoder):
    out = str(tmp_path / "cache")
    write_feature_cache(bow_dataset(), out, small_encoder, 8, batch_size=5)
    return out


def test_bow_cache_round_trip(bow_cache, small_encoder):
    original = bow_dataset()
    data = load_feature_cache(bow_cache)
    assert data.name == "toy_bow" and data.text_kind == "bow"
    assert isinstance(data.texts, np.memmap) and data.texts.dtype == np.float32
    np.testing.assert_array_equal(data.texts, original.texts)
    assert data.vocabulary == original.vocabulary
    expected = small_encoder(original.images.astype(np.float32)).numpy()
    assert data.images.shape == expected.shape == (24, 4, 4, 4)
    np.testing.assert_allclose(np.asarray(data.images, np.float32), expected,
                               rtol=2 ** -10, atol=1e-6)


def test_image_groups_travel_with_the_cache(tmp_path, small_encoder):
    """Which pairs share a photo (the folder reader's extras) is kept, so that a run from the
    cache carves the same whole-photo validation split as a run from the pictures."""
    plain = str(tmp_path / "plain")
    write_feature_cache(bow_dataset(), plain, small_encoder, 8)
    assert "image_groups" not in load_feature_cache(plain).extras
    grouped = bow_dataset()
    grouped.extras["image_groups"] = np.arange(24, dtype=np.int64) // 3
    out = str(tmp_path / "grouped")
    write_feature_cache(grouped, out, small_encoder, 8)
    np.testing.assert_array_equal(load_feature_cache(out).extras["image_groups"],
                                  np.arange(24) // 3)
    splits_file = os.path.join(out, "splits.npz")
    with np.load(splits_file) as stored:
        arrays = dict(stored)
    np.savez(splits_file, **dict(arrays, image_groups=np.arange(5)))
    with pytest.raises(DatasetError, match="image_groups"):
        load_feature_cache(out)


def test_pixels_are_resized_like_in_training(tmp_path, small_encoder):
    import tensorflow as tf

    data = bow_dataset(rows=6, side=20)
    write_feature_cache(data, str(tmp_path / "c"), small_encoder, 8)
    resized = tf.image.resize(data.images.astype(np.float32), (8, 8), antialias=True)
    expected = small_encoder(resized).numpy()
    np.testing.assert_allclose(np.asarray(load_feature_cache(str(tmp_path / "c")).images,
                                          np.float32), expected, rtol=2 ** -10, atol=1e-5)


def test_existing_folder_is_kept_unless_overwrite(bow_cache, small_encoder):
    before = open(os.path.join(bow_cache, MANIFEST_FILE)).read()
    with pytest.raises(FileExistsError):
        write_feature_cache(bow_dataset(), bow_cache, small_encoder, 8)
    assert open(os.path.join(bow_cache, MANIFEST_FILE)).read() == before
    write_feature_cache(bow_dataset(rows=10), bow_cache, small_encoder, 8, overwrite=True)
    assert load_feature_cache(bow_cache).images.shape[0] == 10
    assert os.listdir(os.path.dirname(bow_cache)) == ["cache"]


def test_a_failed_write_leaves_nothing(tmp_path, small_encoder):
    data = bow_dataset()
    data.texts[5, 2] = np.nan
    with pytest.raises(DatasetError, match="row 5"):
        write_feature_cache(data, str(tmp_path / "cache"), small_encoder, 8)
    assert os.listdir(tmp_path) == []


def test_features_beyond_float16_are_refused(tmp_path):
    class Huge:
        backbone, weights_source, cnn_filters = "small_cnn", "none", (4,)

        def __call__(self, images, training=False):
            return images * 1e4  # 255 * 1e4 does not fit in float16

        def compute_output_shape(self, shape):
            return shape

    with pytest.raises(DatasetError, match="float16"):
        write_feature_cache(bow_dataset(), str(tmp_path / "cache"), Huge(), 8)
    assert os.listdir(tmp_path) == []


def _poke(path, row, value):
    array = np.load(path, mmap_mode="r+")
    array[row] = value
    array.flush()
    del array


@pytest.mark.parametrize("file_name", [FEATURES_FILE, TEXTS_BOW_FILE, LABELS_FILE])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_is_refused_naming_the_file(bow_cache, file_name, value):
    _poke(os.path.join(bow_cache, file_name), 7, value)
    with pytest.raises(DatasetError, match=rf"{file_name}: row 7"):
        load_feature_cache(bow_cache)


def _edit_manifest(cache, **changes):
    path = os.path.join(cache, MANIFEST_FILE)
    manifest = json.load(open(path))
    manifest.update(changes)
    json.dump(manifest, open(path, "w"))


@pytest.mark.parametrize("changes, message", [
    ({"rows": 25}, FEATURES_FILE),
    ({"feature_shape": [4, 4, 8]}, FEATURES_FILE),
    ({"feature_dtype": "float32"}, FEATURES_FILE),
    ({"text_dim": 7}, TEXTS_BOW_FILE),
    ({"num_labels": 2}, LABELS_FILE),
    ({"format_version": 99}, "format version 99"),
    ({"format": "something else"}, MANIFEST_FILE),
])
def test_manifest_mismatch_is_refused(bow_cache, changes, message):
    _edit_manifest(bow_cache, **changes)
    with pytest.raises(DatasetError, match=message):
        load_feature_cache(bow_cache)


def test_missing_unreadable_or_pickled_files_are_refused(bow_cache, tmp_path):
    with pytest.raises(DatasetError, match="toy_bow.*--dataset=toy_bow"):
        load_feature_cache(bow_cache, dataset="mirflickr25k")
    with pytest.raises(DatasetError, match="not a folder"):
        load_feature_cache(str(tmp_path / "nowhere"))
    # an object array needs pickle to load: refused, never unpickled
    np.save(os.path.join(bow_cache, LABELS_FILE), np.array([{"a": 1}] * 24, dtype=object),
            allow_pickle=True)
    with pytest.raises(DatasetError, match=LABELS_FILE):
        load_feature_cache(bow_cache)
    # a truncated feature file
    path = os.path.join(bow_cache, FEATURES_FILE)
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) - 10)
    with pytest.raises(DatasetError, match=FEATURES_FILE):
        load_feature_cache(bow_cache)
    os.remove(os.path.join(bow_cache, MANIFEST_FILE))
    with pytest.raises(DatasetError, match=MANIFEST_FILE):
        load_feature_cache(bow_cache)


def test_already_features_cannot_be_cached(tmp_path, small_encoder):
    data = bow_dataset()
    data.images = np.zeros((24, 5), np.float32)
    data.image_kind = "features"
    with pytest.raises(ValueError, match="already features"):
        write_feature_cache(data, str(tmp_path / "c"), small_encoder, 8)


def test_an_undecodable_image_file_names_its_batch(tmp_path, small_encoder):
    from PIL import Image

    paths = []
    for index in range(6):
        path = tmp_path / f"{index}.png"
        Image.new("RGB", (9, 9), (index * 40, 0, 0)).save(path)
        paths.append(str(path))
    (tmp_path / "4.png").write_bytes(b"not an image")
    data = bow_dataset(rows=6)
    data.images, data.image_kind = np.asarray(paths, dtype=object), "paths"
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match=r"rows 4\.\.5 .*4\.png"):
        write_feature_cache(data, str(out), small_encoder, 8, batch_size=2)
    assert not out.exists() and not [n for n in os.listdir(tmp_path) if n.startswith(".")]
