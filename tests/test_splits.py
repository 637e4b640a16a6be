"""Validation and default splits keep the captions of one photo together: no picture is both
trained on and used to select (validation) or to judge (query) a model."""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from daah_tf.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from daah_tf.data.folder import default_split, load_folder
from daah_tf.data.splits import carve_validation


def _grouped(num_pictures, captions, seed=0):
    """(N,) picture of every pair: num_pictures photos with 1..captions captions each."""
    counts = np.random.default_rng(seed).integers(1, captions + 1, num_pictures)
    return np.repeat(np.arange(num_pictures), counts)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.3])
def test_grouped_validation_takes_whole_pictures_and_just_enough(seed, fraction):
    groups = _grouped(60, 5, seed)
    train_index = np.sort(np.random.default_rng(seed).permutation(len(groups))[:150])
    train, validation = carve_validation(train_index, fraction, seed, groups=groups)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, validation])), train_index)
    assert not set(groups[train]) & set(groups[validation])
    # Brute force: walk the seeded order of the training pairs, taking each new picture whole
    # until at least the requested number of pairs is held out.
    count = int(round(len(train_index) * fraction))
    expected = []
    for position in np.random.default_rng(seed + 1).permutation(len(train_index)):
        if len(expected) >= count:
            break
        picture = groups[train_index[position]]
        if picture not in groups[expected]:
            expected += [i for i in train_index if groups[i] == picture]
    np.testing.assert_array_equal(validation, np.sort(expected))
    again = carve_validation(train_index, fraction, seed, groups=groups)
    np.testing.assert_array_equal(again[1], validation)


def test_single_pictures_split_as_before():
    """One caption per photo (Wiki, fashion-9k): the split is the pair-level one, unchanged."""
    train_index = np.arange(3, 400, 2)
    plain = carve_validation(train_index, 0.1, 7)
    singles = carve_validation(train_index, 0.1, 7, groups=np.arange(400))
    for a, b in zip(plain, singles, strict=True):
        np.testing.assert_array_equal(a, b)
    assert carve_validation(train_index, 0.0, 7, groups=np.zeros(400, np.int64))[1].size == 0
    # one photo for every training pair: nothing to hold out whole, so pairs as before
    for a, b in zip(plain, carve_validation(train_index, 0.1, 7, groups=np.zeros(400, np.int64)),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    # two photos: one of them is held out whole, never both
    two = np.where(np.arange(400) < 390, 0, 1)
    train, validation = carve_validation(np.arange(400), 0.2, 7, groups=two)
    assert len(train) and len(validation) and set(two[train]).isdisjoint(two[validation])


def test_default_split_queries_whole_pictures():
    groups = _grouped(50, 5)
    split = default_split(len(groups), 3, groups)
    assert not set(groups[split["query"]]) & set(groups[split["database"]])
    assert set(split["train"]) <= set(split["database"])
    assert len(split["query"]) >= round(0.1 * len(groups))
    np.testing.assert_array_equal(np.sort(np.concatenate([split["query"], split["database"]])),
                                  np.arange(len(groups)))
    # no photo repeated: the pair-level split of before
    for name, index in default_split(40, 3, np.arange(40)).items():
        np.testing.assert_array_equal(index, default_split(40, 3)[name])
    # one photo with every caption: nothing to query it against, so pairs split as before
    assert len(default_split(6, 3, np.zeros(6, np.int64))["query"]) == 1


def _photo_folder(root, photos=12, captions=4):
    """A folder dataset: each photo (a flat colour) with `captions` captions, no split fields."""
    (root / "photos").mkdir(parents=True)
    lines = []
    for photo in range(photos):
        name = f"photos/{photo:02d}.png"
        Image.new("RGB", (8, 8), (20 * photo, 0, 0)).save(root / name)
        for caption in range(captions):
            lines.append(json.dumps({"image": name, "text": f"photo {photo} caption {caption}",
                                     "labels": [f"kind{photo % 3}"]}))
    (root / "pairs.jsonl").write_text("\n".join(lines) + "\n")


def test_a_folder_run_never_validates_or_queries_on_a_training_photo(tmp_path):
    from daah_tf.training.data_loading import load_data, warn_if_small_validation

    _photo_folder(tmp_path / "data")
    dataset = load_folder(str(tmp_path / "data"))
    groups = dataset.extras["image_groups"]
    np.testing.assert_array_equal(groups, np.repeat(np.arange(12), 4))
    config = RunConfig(
        data=DataConfig(dataset="folder", data_dir=str(tmp_path / "data"), image_size=8,
                        validation_fraction=0.25),
        model=ModelConfig(bits=8),
        train=TrainConfig(model_dir=str(tmp_path / "run")))
    data = load_data(config)
    splits = data.splits
    held_out = splits["validation"]
    expected = (f"validation split has {len(held_out)} pairs of {len(set(groups[held_out]))} "
                r"photos.*--validation_fraction \(now 0.25\)")
    with pytest.warns(UserWarning, match=expected):
        warn_if_small_validation(data, 0.25)
    pictures = {name: set(groups[index]) for name, index in splits.items()}
    assert pictures["validation"] and pictures["query"]
    assert not pictures["validation"] & pictures["train"]
    assert not pictures["query"] & pictures["database"]


def test_given_splits_that_split_a_photo_are_named(tmp_path):
    """A pairs.jsonl whose rows of one image have different splits loads, with a warning that
    names the file and the lines; consistent splits load silently."""
    _photo_folder(tmp_path, photos=4, captions=2)
    pairs = tmp_path / "pairs.jsonl"
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    for index, row in enumerate(rows):
        row["split"] = "query" if index < 2 else "train"  # photo 0: both captions query
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_folder(str(tmp_path))
    rows[2]["split"] = "query"  # photo 1: line 3 query, line 4 train
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.warns(UserWarning, match=r"pairs.jsonl: 1 image file\(s\) have both query and "
                                         r"database/train rows, e.g. lines 3, 4"):
        dataset = load_folder(str(tmp_path))
    np.testing.assert_array_equal(dataset.splits["query"], [0, 1, 2])
