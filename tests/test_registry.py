"""Readers on the real data under <repo>/../shared/data (skipped when absent), the MIRFLICKR-25K
text layout on generated files, and the registry."""


import pytest
from _helpers import SHARED_DATA

from daah_tf.data.base import DatasetError
from daah_tf.data.registry import DATASETS, load_dataset

WIKI_DIR = SHARED_DATA / "wiki"


def test_registry_unknown_name_lists_the_choices():
    with pytest.raises(ValueError) as error:
        load_dataset("cifar", "/nowhere")
    assert all(name in str(error.value) for name in DATASETS)


def test_registry_missing_data_dir_names_it_and_the_flag(tmp_path):
    absent = tmp_path / "absent"
    with pytest.raises(DatasetError) as error:
        load_dataset("wiki", str(absent))
    assert str(absent) in str(error.value) and "--data_dir" in str(error.value)
    with pytest.raises(DatasetError, match="--data_dir"):
        load_dataset("folder", None)


def test_registry_synthetic_and_dispatch():
    dataset = load_dataset("synthetic", None, seed=3, num_pairs=20, num_classes=3,
                           image_size=16)
    assert dataset.name == "synthetic" and len(dataset) == 20
    if WIKI_DIR.is_dir():
        assert load_dataset("wiki", str(WIKI_DIR)).name == "wiki"
