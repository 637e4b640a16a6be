"""tools/binarization_gap.py: the real-valued AP against a brute-force loop, and the tool on the
session's smoke-trained run against daah_tf.evaluate's own numbers."""

import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))

from binarization_gap import binarization_gap, euclidean_average_precision  # noqa: E402


def brute_average_precision(query, database, query_labels, db_labels):
    out = []
    for q, ql in zip(query, query_labels, strict=True):
        distances = [np.sqrt(np.sum((q - d) ** 2)) for d in database]
        order = sorted(range(len(database)), key=lambda i: distances[i])
        hits, total = 0, 0.0
        for rank, i in enumerate(order, start=1):
            if np.dot(ql, db_labels[i]) > 0:
                hits += 1
                total += hits / rank
        out.append(total / hits if hits else 0.0)
    return np.array(out)


def test_euclidean_average_precision_matches_a_loop():
    rng = np.random.default_rng(3)
    query, database = rng.normal(size=(9, 6)), rng.normal(size=(30, 6))
    query_labels = np.eye(4)[rng.integers(0, 4, 9)]
    db_labels = np.eye(4)[rng.integers(0, 4, 30)]
    db_labels[0] = 0  # an item relevant to no query
    got = euclidean_average_precision(query, database, query_labels, db_labels)
    np.testing.assert_allclose(got, brute_average_precision(query, database, query_labels,
                                                            db_labels), rtol=1e-12)
    # A query whose label no database item has scores 0, not NaN.
    lonely = euclidean_average_precision(query[:1], database, np.eye(5)[[4]],
                                         np.pad(db_labels, ((0, 0), (0, 1))))
    assert lonely.tolist() == [0.0]


def test_binary_codes_lose_nothing_and_the_share_counts_small_entries():
    rng = np.random.default_rng(4)
    labels = np.eye(3)[rng.integers(0, 3, 20)]
    # Codes that are already binary: both rankings agree on every relevance level.
    codes = {m: np.where(labels @ rng.normal(size=(3, 8)) >= 0, 1.0, -1.0) for m in
             ("image", "text")}
    report = binarization_gap(codes, codes, labels, labels)
    for direction in ("I->T", "T->I"):
        assert abs(report[direction]["binary"] - report[direction]["real"]) < 1e-9
    assert report["far_from_binary"] == {"image": 0.0, "text": 0.0}
    halved = {m: 0.4 * c for m, c in codes.items()}
    assert binarization_gap(halved, codes, labels, labels)["far_from_binary"]["image"] == 0.5


def test_the_tool_on_a_trained_run_reports_evaluates_binary_map(smoke_run):
    model_dir = smoke_run[0]
    with open(os.path.join(model_dir, "metrics.json")) as stream:
        trained = json.load(stream)
    done = subprocess.run([sys.executable, "tools/binarization_gap.py",
                           f"--model_dir={model_dir}"], cwd=REPO, capture_output=True,
                          text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:3]}
    assert float(lines["I->T"][4]) == round(trained["i2t_map"], 4)
    assert float(lines["T->I"][4]) == round(trained["t2i_map"], 4)
    assert "entries with |H| < 0.5" in done.stdout
    missing = subprocess.run([sys.executable, "tools/binarization_gap.py",
                              f"--model_dir={model_dir}-missing"], cwd=REPO,
                             capture_output=True, text=True, timeout=600)
    assert missing.returncode == 2 and "no such directory" in missing.stderr
