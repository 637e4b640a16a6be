"""`import daah_tf` refuses a machine with both TensorFlow wheels (README "Install")."""

import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def _import_with_fake_distribution(tmp_path, name):
    # A dist-info folder is all importlib.metadata looks at: the wheel "is installed".
    info = tmp_path / f"{name.replace('-', '_')}-2.21.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 2.21.0\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    return subprocess.run([sys.executable, "-c", "import daah_tf"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_both_tensorflow_wheels_are_refused_with_the_fix(tmp_path):
    import importlib.metadata

    installed = {d for d in ("tensorflow", "tensorflow-cpu")
                 if _installed(importlib.metadata, d)}
    assert len(installed) == 1, installed  # the test environment itself has exactly one
    other = ({"tensorflow", "tensorflow-cpu"} - installed).pop()
    result = _import_with_fake_distribution(tmp_path, other)
    assert result.returncode != 0
    assert "Both tensorflow and tensorflow-cpu are installed" in result.stderr
    assert "pip install -e '.[cpu]'" in result.stderr


def _installed(metadata, name):
    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False
