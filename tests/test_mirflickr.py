"""Readers on the real data under <repo>/../shared/data (skipped when absent), the MIRFLICKR-25K
text layout on generated files, and the registry."""

# Fuzzed feature files for the .mat readers: a clear DatasetError or a correct load, never
# another exception from deep inside NumPy, SciPy or h5py.

import os

import numpy as np
import pytest
import scipy.io
from _helpers import SHARED_DATA, require
from _mat_fuzz import SETTINGS, check_loaded, mat_contents
from hypothesis import given

from daah_tf.data.base import DatasetError
from daah_tf.data.mirflickr import (
    LABEL_NAMES,
    NUM_PAIRS,
    load_mirflickr25k,
    missing_images,
    tags_to_bow,
)
from daah_tf.data.splits import random_protocol_split

MIRFLICKR_DIR = SHARED_DATA / "mirflickr25k-text"




@pytest.fixture(scope="module")
def mirflickr():
    return load_mirflickr25k(require(MIRFLICKR_DIR), seed=0)


def test_mirflickr_text_real_shapes(mirflickr):
    assert len(mirflickr) == NUM_PAIRS
    assert mirflickr.text_kind == "bow" and mirflickr.texts.shape == (NUM_PAIRS, 1386)
    assert set(np.unique(mirflickr.texts)) <= {0.0, 1.0}
    assert mirflickr.texts.sum(axis=1).min() >= 1  # every row has a tag in the vocabulary
    assert mirflickr.extras["rows_without_tags"] == 0
    assert len(mirflickr.vocabulary) == 1386
    assert mirflickr.labels.shape == (NUM_PAIRS, 24) and mirflickr.label_names == list(
        LABEL_NAMES)


def test_mirflickr_text_real_labels_match_the_file(mirflickr):
    expected = np.loadtxt(MIRFLICKR_DIR / "all_labels.txt", dtype=np.float32)
    np.testing.assert_array_equal(mirflickr.labels, expected)
    np.testing.assert_array_equal(mirflickr.labels.sum(axis=0), expected.sum(axis=0))


def test_mirflickr_text_real_bow_of_first_row(mirflickr):
    first = (MIRFLICKR_DIR / "all_tags.txt").read_text(encoding="utf-8").splitlines()[0]
    expected = {tag for tag in first.split(",") if tag in set(mirflickr.vocabulary)}
    assert {mirflickr.vocabulary[c] for c in np.flatnonzero(mirflickr.texts[0])} == expected


def test_mirflickr_text_real_images_are_paths(mirflickr):
    assert mirflickr.image_kind == "paths"
    assert mirflickr.images[0] == os.path.join(str(MIRFLICKR_DIR), "mirflickr", "im1.jpg")
    assert mirflickr.extras["missing_images"] == len(missing_images(mirflickr))


def test_mirflickr_text_real_protocol(mirflickr):
    splits = mirflickr.splits
    assert [len(splits[s]) for s in ("query", "database", "train")] == [2000, 18015, 10000]
    assert not set(splits["query"]) & set(splits["database"])
    assert set(splits["train"]) <= set(splits["database"])
    # reproducible: the split is the documented function of the seed, nothing else
    expected = random_protocol_split(NUM_PAIRS, 2000, 10000, seed=0)
    for split in splits:
        np.testing.assert_array_equal(splits[split], expected[split])
    other = load_mirflickr25k(str(MIRFLICKR_DIR), seed=1)
    assert not np.array_equal(splits["query"], other.splits["query"])


VOCABULARY = ["sky", "clouds", "dog", "beach", "night", "tree"]


def write_text_layout(directory, rows=NUM_PAIRS):
    """A MIRFLICKR-shaped text layout over a 6-word vocabulary; returns its labels."""
    rng = np.random.default_rng(0)
    labels = (rng.random((rows, 24)) < 0.1).astype(int)
    labels[np.arange(rows), rng.integers(24, size=rows)] = 1
    tags = [",".join(rng.choice(VOCABULARY + ["unknown"], size=3)) for _ in range(rows)]
    files = {
        "TagList.txt": "\r\n".join(VOCABULARY) + "\r\n",
        "all_imgs.txt": "".join(f"mirflickr/im{i + 1}.jpg\r\n" for i in range(rows)),
        "all_tags.txt": "\r\n".join(tags) + "\r\n",
        "all_labels.txt": "".join(" ".join(map(str, row)) + "\r\n" for row in labels),
        "labels_annotation.txt": "".join(
            ",".join(LABEL_NAMES[c] for c in np.flatnonzero(row)) + "\n" for row in labels),
    }
    for name, content in files.items():
        (directory / name).write_text(content, encoding="utf-8", newline="")
    return labels


def replace_line(path, index, text):
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[index] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def text_layout(tmp_path_factory):
    directory = tmp_path_factory.mktemp("text_layout")
    return directory, write_text_layout(directory)


def copy_layout(source, target):
    for path in source.glob("*.txt"):
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_text_layout_generated_loads(text_layout):
    directory, labels = text_layout
    dataset = load_mirflickr25k(str(directory), seed=0)
    np.testing.assert_array_equal(dataset.labels, labels)
    assert dataset.texts.shape == (NUM_PAIRS, 6) and dataset.extras["layout"] == "text"
    assert dataset.extras["missing_images"] == NUM_PAIRS


def test_text_layout_counts_missing_images(text_layout, tmp_path):
    directory = copy_layout(text_layout[0], tmp_path)
    (tmp_path / "mirflickr").mkdir()
    for index in (1, 2, 3):
        (tmp_path / "mirflickr" / f"im{index}.jpg").write_bytes(b"x")
    dataset = load_mirflickr25k(str(directory), seed=0)
    assert dataset.extras["missing_images"] == NUM_PAIRS - 3
    assert str(tmp_path / "mirflickr" / "im1.jpg") not in missing_images(dataset)


def test_tag_matching_is_exact_after_stripping_whitespace():
    bow = tags_to_bow([" sky ,Sky,dog,dog,,SKY", "unknown", "tree\t"], ["sky", "dog", "tree"])
    np.testing.assert_array_equal(bow, [[1, 1, 0], [0, 0, 0], [0, 0, 1]])


@pytest.mark.parametrize("name, line, text, match", [
    ("all_labels.txt", 41, "0 1 2", r"all_labels\.txt:42: expected 24"),
    ("labels_annotation.txt", 9, "dog,cat", r"labels_annotation\.txt:10: names"),
    ("all_imgs.txt", 4, "../../etc/passwd", r"all_imgs\.txt:5: .*outside"),
    ("TagList.txt", 2, "sky", r"TagList\.txt:3: tag 'sky' repeats line 1"),
])
def test_text_layout_bad_lines_are_named(text_layout, tmp_path, name, line, text, match):
    copy_layout(text_layout[0], tmp_path)
    replace_line(tmp_path / name, line, text)
    with pytest.raises(DatasetError, match=match):
        load_mirflickr25k(str(tmp_path), seed=0)


def test_text_layout_row_counts(text_layout, tmp_path):
    copy_layout(text_layout[0], tmp_path)
    lines = (tmp_path / "all_tags.txt").read_text().splitlines()
    (tmp_path / "all_tags.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DatasetError, match=r"all_tags\.txt: 20014 rows.*20015"):
        load_mirflickr25k(str(tmp_path), seed=0)


def test_text_layout_invalid_utf8(text_layout, tmp_path):
    copy_layout(text_layout[0], tmp_path)
    with open(tmp_path / "all_tags.txt", "ab") as handle:
        handle.write(b"sky,\xff\xfe\n")
    with pytest.raises(DatasetError, match=r"all_tags\.txt:20016: not valid UTF-8"):
        load_mirflickr25k(str(tmp_path), seed=0)




@given(contents=mat_contents(["images", "YAll", "LAll", "IAll", "FAll", "other"]))
@SETTINGS
def test_fuzzed_flickr_mat_loads_or_raises_dataset_error(tmp_path, contents):
    scipy.io.savemat(tmp_path / "FLICKR-25K.mat", contents)
    try:
        with _no_warning_check():
            dataset = load_mirflickr25k(str(tmp_path), seed=0, layout="single")
    except DatasetError as error:
        assert "FLICKR-25K.mat" in str(error) or str(tmp_path) in str(error)
        return
    check_loaded(dataset)


def test_empty_flickr_mat_named_in_the_error(tmp_path):
    # Found by the fuzz test above: zero rows used to give an error without the file's name.
    empty = np.zeros((0, 0))
    scipy.io.savemat(tmp_path / "FLICKR-25K.mat", {"images": empty, "YAll": empty, "LAll": empty})
    with pytest.raises(DatasetError, match="FLICKR-25K.mat"):
        load_mirflickr25k(str(tmp_path), seed=0, layout="single")


class _no_warning_check:
    """Row-count warnings from the .mat layouts are expected here; they are not errors."""

    def __enter__(self):
        import warnings

        self._catcher = warnings.catch_warnings()
        self._catcher.__enter__()
        warnings.simplefilter("ignore", UserWarning)

    def __exit__(self, *exc):
        return self._catcher.__exit__(*exc)
