"""Crash safety and hostile conditions: kill -9 and resume, unreadable checkpoints, NaN/Inf,
unwritable or full run directories, contradicting flags, atomic writes."""

import os

import pytest


def test_export_publishes_versions_whole_and_keeps_the_newest(tmp_path, monkeypatch):
    from daah_tf import export
    from daah_tf.saved_model_layout import latest_saved_model

    class Archive:  # writes what a SavedModel has at its top, enough for the layout
        def write_out(self, path, verbose=False):
            os.makedirs(os.path.join(path, "variables"))
            with open(os.path.join(path, "saved_model.pb"), "w") as stream:
                stream.write("pb")

    base = tmp_path / "saved_model"
    with pytest.raises(FileNotFoundError, match="no SavedModel"):
        latest_saved_model(str(tmp_path))
    (base / ".partial-7").mkdir(parents=True)  # what a crash left: never served, removed
    for expected in range(1, export.KEEP_VERSIONS + 3):
        assert export._publish(Archive(), str(base)) == str(base / str(expected))
        assert latest_saved_model(str(tmp_path)) == str(base / str(expected))
    names = sorted(os.listdir(base), key=int)
    assert names == [str(v) for v in range(3, export.KEEP_VERSIONS + 3)]
