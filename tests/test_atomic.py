"""Crash safety and hostile conditions: kill -9 and resume, unreadable checkpoints, NaN/Inf,
unwritable or full run directories, contradicting flags, atomic writes."""

import json
import os

import numpy as np
import pytest


def test_splits_and_featurizer_are_written_atomically(tmp_path, monkeypatch):
    from daah_tf.data.splits import write_splits
    from daah_tf.data.text_featurizer import TextFeaturizer

    write_splits({"train": np.arange(3)}, str(tmp_path / "splits.json"))
    TextFeaturizer(["a", "b"]).save(str(tmp_path))
    before = {name: (tmp_path / name).read_text() for name in os.listdir(tmp_path)}

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_splits({"train": np.arange(5)}, str(tmp_path / "splits.json"))
    with pytest.raises(OSError):
        TextFeaturizer(["c"]).save(str(tmp_path))
    assert {name: (tmp_path / name).read_text() for name in os.listdir(tmp_path)} == before


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    from daah_tf.training import run_directory

    target = tmp_path / "metrics.json"
    run_directory.atomic_write_json(str(target), {"i2t_map": 0.5})

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        run_directory.atomic_write_json(str(target), {"i2t_map": 0.9})
    assert json.loads(target.read_text()) == {"i2t_map": 0.5}
    assert os.listdir(tmp_path) == ["metrics.json"]  # no temporary file left behind
