"""The folder reader (DIR/pairs.jsonl): good data, every kind of bad row, split semantics,
image verification, and fuzzed lines (loads or raises DatasetError, nothing else)."""

import json
import os
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from daah_tf.data.base import DatasetError
from daah_tf.data.folder import load_folder, verify_images


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


# ------------------------------------------------------------------------------------------
# Fuzzing
# ------------------------------------------------------------------------------------------

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
