"""The check command, run as users run it: `python -m daah_tf.data.check` in a subprocess."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_check(*args):
    environment = dict(os.environ, PYTHONPATH=str(REPO), PYTHONWARNINGS="default")
    return subprocess.run([sys.executable, "-m", "daah_tf.data.check", *args], cwd=REPO,
                          env=environment, capture_output=True, text=True, timeout=120)


def make_folder(directory, bad_line=None):
    rows = []
    for index in range(6):
        name = f"img/{index}.png"
        (directory / "img").mkdir(exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), index * 40, np.uint8)).save(directory / name)
        rows.append(json.dumps({"image": name, "text": f"a dog number {index}",
                                "labels": ["dog"] if index % 2 else ["dog", "cat"]}))
    if bad_line is not None:
        rows.insert(2, bad_line)
    (directory / "pairs.jsonl").write_text("\n".join(rows) + "\n")


def test_check_prints_a_summary(tmp_path):
    make_folder(tmp_path)
    result = run_check("--dataset=folder", f"--data_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "dataset: folder, 6 pairs" in out and "query: 1" in out and "train: 2" in out
    assert "images: paths, 6 files, 0 missing" in out
    assert "texts: raw, 9 distinct whitespace tokens" in out
    assert "cat  3" in out and "dog  6" in out and "bad rows: 0" in out


def test_check_fails_cleanly_on_bad_data_and_skips_on_request(tmp_path):
    make_folder(tmp_path, bad_line='{"image": "../x.png", "text": "t", "labels": ["dog"]}')
    result = run_check("--dataset=folder", f"--data_dir={tmp_path}")
    assert result.returncode != 0
    assert f"{tmp_path / 'pairs.jsonl'}:3:" in result.stderr and "outside" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    skipped = run_check("--dataset=folder", f"--data_dir={tmp_path}", "--skip_bad_rows",
                        "--verify_images")
    assert skipped.returncode == 0, skipped.stderr
    assert "bad rows: 1" in skipped.stdout and "line 3:" in skipped.stdout
    assert "skipped 1 bad row" in skipped.stderr


def test_check_lists_every_bad_row_up_to_the_cap(tmp_path):
    make_folder(tmp_path)
    rows = (tmp_path / "pairs.jsonl").read_text().splitlines()
    rows[1] = '{"image": "img/missing.png", "text": "t", "labels": ["dog"]}'
    rows[3] = "not json"
    rows.insert(5, '{"image": "img/0.png", "text": "t", "labels": []}')
    (tmp_path / "pairs.jsonl").write_text("\n".join(rows) + "\n")
    pairs = tmp_path / "pairs.jsonl"
    result = run_check("--dataset=folder", f"--data_dir={tmp_path}")
    assert result.returncode == 1
    assert f"3 bad row(s) in {pairs}" in result.stderr
    listed = [line.strip() for line in result.stderr.splitlines() if line.startswith("  ")]
    assert [line.split(":")[1] for line in listed] == ["2", "4", "6"], listed
    assert all(line.startswith(f"{pairs}:") for line in listed)
    assert "invalid JSON" in listed[1] and "Traceback" not in result.stderr
    capped = run_check("--dataset=folder", f"--data_dir={tmp_path}", "--max_bad_rows=1")
    assert capped.returncode == 1
    assert f"{pairs}:2:" in capped.stderr and f"{pairs}:4:" not in capped.stderr
    assert "... and 2 more" in capped.stderr
