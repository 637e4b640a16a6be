"""daah_tf.evaluate and daah_tf.search end to end, on one smoke-trained run (a copy of the
session's) shared by the module.

The commands run as subprocesses (exit codes, printed output, files); their numbers and hits are
checked against what daah_tf.metrics computes from codes made here, in process: with the restored
Keras model for evaluation, with the SavedModel for search.
"""

import csv
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from daah_tf.saved_model_layout import latest_saved_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIRECTIONS = {"i2t": ("image", "text"), "t2i": ("text", "image"), "i2i": ("image", "image"),
              "t2t": ("text", "text")}
HIT_LINE = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+\S")


def run_module(module, *args, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def parse_hits(stdout):
    """[(rank, id, distance)] from the printed hit lines of `search query`."""
    return [tuple(int(g) for g in m.groups()) for m in map(HIT_LINE.match, stdout.splitlines())
            if m]


@pytest.fixture(scope="module")
def model_dir(smoke_run, tmp_path_factory):
    """A copy of the session's smoke-trained run (tests/conftest.py): evaluate and search build
    write into the run directory."""
    directory = str(tmp_path_factory.mktemp("evaluate_search") / "run")
    shutil.copytree(smoke_run[0], directory)
    return directory


@pytest.fixture(scope="module")
def commands(model_dir):
    """`daah_tf.evaluate` and `daah_tf.search build` on the run: {name: (exit status, stdout,
    stderr)}. Neither reads what the other writes (eval/, index/): they run side by side."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    argvs = {"evaluate": ["daah_tf.evaluate", f"--model_dir={model_dir}"],
             "build": ["daah_tf.search", "build", f"--model_dir={model_dir}"]}
    processes = {name: subprocess.Popen([sys.executable, "-m", *argv], cwd=REPO, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True) for name, argv in argvs.items()}
    try:  # (one that fills its pipe meanwhile only waits for its turn to be read)
        outputs = {name: process.communicate(timeout=600) for name, process in processes.items()}
        return {name: (processes[name].returncode, *outputs[name]) for name in processes}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def evaluated(model_dir, commands):
    status, stdout, stderr = commands["evaluate"]
    assert status == 0, stdout + stderr
    with open(os.path.join(model_dir, "eval", "metrics.json")) as stream:
        return stdout, json.load(stream)


@pytest.fixture(scope="module")
def run_data(model_dir):
    """(RunConfig, dataset with the run's splits.json split)."""
    from daah_tf.data.splits import read_splits
    from daah_tf.run import load_run_config
    from daah_tf.training.data_loading import load_data

    config = load_run_config(model_dir)
    data = load_data(config)
    data.splits = read_splits(os.path.join(model_dir, "splits.json"))
    return config, data


@pytest.fixture(scope="module")
def built(commands):
    status, stdout, stderr = commands["build"]
    assert status == 0, stdout + stderr
    return stdout


@pytest.fixture(scope="module")
def served(model_dir):
    """encode(signature, **{input: values}) -> packed codes, from the SavedModel (batches of 32)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(latest_saved_model(model_dir))

    def encode(signature, batch_size=32, **inputs):
        (name, values), = inputs.items()
        parts = [loaded.signatures[signature](**{name: tf.constant(values[s:s + batch_size])})
                 ["packed_codes"].numpy() for s in range(0, len(values), batch_size)]
        return np.concatenate(parts)

    return encode


def brute_force(query_packed, db_packed, db_rows, k):
    """ids and distances of the k nearest rows, ties by position (stable sort)."""
    from daah_tf.metrics import hamming_distance

    distances = hamming_distance(query_packed, db_packed)[0]
    order = np.argsort(distances, kind="stable")[:k]
    return db_rows[order].tolist(), distances[order].tolist()


def _event_tags(directory):
    import tensorflow as tf

    return {value.tag for name in os.listdir(directory)
            for event in tf.compat.v1.train.summary_iterator(os.path.join(directory, name))
            for value in event.summary.value}


def test_evaluate_prints_table_and_writes_files(model_dir, evaluated):
    stdout, results = evaluated
    for label in ("I->T", "T->I", "I->I", "T->T", "chance", "mAP@all", "mAP@1000", "P@100"):
        assert label in stdout, label
    assert results["bits"] == 16 and results["dataset"] == "synthetic"
    assert results["checkpoint"] == "best" and results["tie_rule"] == "index"
    assert (results["num_query"], results["num_database"]) == (24, 216)
    for name in DIRECTIONS:
        for key, value in results["directions"][name].items():
            assert 0.0 <= value <= 1.0, (name, key)
        assert results[f"{name}_map"] == results["directions"][name]["map_all"]
        for value in results["pr_curve"][name]["precision"] + results["pr_curve"][name]["recall"]:
            assert value is None or 0.0 <= value <= 1.0
    assert 0.0 < results["chance_map"] < 1.0
    with open(os.path.join(model_dir, "eval", "pr_curve.csv")) as stream:
        rows = list(csv.DictReader(stream))
    for name in DIRECTIONS:
        radii = [int(row["radius"]) for row in rows if row["direction"] == name]
        assert radii == list(range(17))  # bits + 1
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "plot` extra" in stdout
    else:
        for name in ("pr_curve.png", "precision_at_k.png"):
            with open(os.path.join(model_dir, "eval", name), "rb") as stream:
                assert stream.read(8) == b"\x89PNG\r\n\x1a\n"
    assert {"map_all/i2t", "precision_at_k/t2t"} <= _event_tags(
        os.path.join(model_dir, "tensorboard", "eval"))
    assert not [n for n in os.listdir(os.path.join(model_dir, "eval")) if n.startswith(".tmp")]


def test_evaluate_numbers_equal_metrics_on_restored_codes(model_dir, evaluated, run_data):
    from daah_tf import metrics
    from daah_tf.evaluation.encoding import CodeEncoder
    from daah_tf.run import restore_model

    _, results = evaluated
    config, data = run_data
    model, featurizer, _, _ = restore_model(model_dir)
    encoder = CodeEncoder(model)
    splits = {name: data.splits[name] for name in ("query", "database")}
    codes = {name: encoder.encode_split(data, rows, config.data.batch_size, featurizer,
                                        config.data.image_size) for name, rows in splits.items()}
    labels = {name: data.labels[rows] for name, rows in splits.items()}
    with open(os.path.join(model_dir, "eval", "pr_curve.csv")) as stream:
        csv_rows = list(csv.DictReader(stream))
    for name, (source, target) in DIRECTIONS.items():
        args = (codes["query"][source], codes["database"][target], labels["query"],
                labels["database"])
        got = results["directions"][name]
        assert got["map_all"] == pytest.approx(metrics.mean_average_precision(*args), abs=1e-12)
        assert got["map_at_k"] == pytest.approx(
            metrics.mean_average_precision(*args, top_k=1000), abs=1e-12)
        assert got["precision_at_k"] == pytest.approx(
            metrics.precision_at_k(*args, [100])[0], abs=1e-12)
        assert got["precision_radius_2"] == pytest.approx(
            metrics.precision_within_radius(*args, radius=2), abs=1e-12)
        precision, _ = metrics.precision_recall_curve(*args)
        from_csv = np.array([float(r["precision"]) for r in csv_rows if r["direction"] == name])
        np.testing.assert_allclose(from_csv, precision, rtol=0, atol=1e-12)  # nan == nan


def test_text_query_hits_equal_brute_force_ranking(model_dir, built, run_data, served):
    assert "Indexed 216 items" in built
    for name in ("image.npz", "text.npz", "items.json"):
        assert os.path.exists(os.path.join(model_dir, "index", name))
    _, data = run_data
    text = str(data.texts[data.splits["query"][0]])
    result = run_module("daah_tf.search", "query", f"--model_dir={model_dir}", "--text", text,
                        "--k", "7")
    assert result.returncode == 0, result.stdout + result.stderr
    hits = parse_hits(result.stdout)
    assert [rank for rank, _, _ in hits] == list(range(1, 8))
    distances = [distance for _, _, distance in hits]
    assert distances == sorted(distances)
    database = data.splits["database"]
    assert set(i for _, i, _ in hits) <= set(database.tolist())
    db_codes = served("encode_image", images=data.images[database].astype(np.float32))
    query_code = served("encode_text", texts=np.array([text], dtype=object))
    ids, expected = brute_force(query_code, db_codes, database, 7)
    assert [i for _, i, _ in hits] == ids and distances == expected


def test_image_and_vector_queries_equal_brute_force_ranking(model_dir, built, run_data, served,
                                                            tmp_path):
    from PIL import Image

    from daah_tf import search
    from daah_tf.data.text_featurizer import TextFeaturizer

    _, data = run_data
    row = data.splits["query"][1]
    path = tmp_path / "query.png"
    Image.fromarray(data.images[row]).save(path)
    lines = []
    hits = search.query(model_dir, image=str(path), k=9, print_fn=lines.append)
    assert "text index" in lines[0] and len(hits) == 9
    database = data.splits["database"]
    db_texts = np.array([str(t) for t in data.texts[database]], dtype=object)
    db_codes = served("encode_text", texts=db_texts)
    query_code = served("encode_image_bytes", image_bytes=np.array([path.read_bytes()],
                                                                   dtype=object))
    ids, distances = brute_force(query_code, db_codes, database, 9)
    assert [h[1] for h in hits] == ids and [h[2] for h in hits] == distances
    # The same text as raw string and as its bag-of-words vector finds the same images.
    text = str(data.texts[row])
    bow = TextFeaturizer.load(model_dir).transform([text])[0]
    by_text = search.query(model_dir, text=text, k=5, print_fn=lines.append)
    by_vector = search.query(model_dir, vector=[repr(float(v)) for v in bow], k=5,
                             print_fn=lines.append)
    assert by_text == by_vector


@pytest.mark.parametrize("args, message", [
    (("daah_tf.evaluate", "--model_dir={missing}"), "no such directory"),
    (("daah_tf.search", "query", "--model_dir={missing}", "--text=x"), "no such directory"),
    (("daah_tf.search", "build", "--model_dir={missing}"), "no such directory"),
    (("daah_tf.search", "query", "--model_dir={run}", "--index={empty}", "--text=x"),
     "no index in"),
    (("daah_tf.search", "frob", "--model_dir={run}"), "give one command, build or query"),
])
def test_errors_exit_with_a_message(model_dir, tmp_path, args, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    values = {"missing": tmp_path / "missing", "run": model_dir, "empty": empty}
    result = run_module(*[a.format(**values) for a in args])
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_evaluate_without_checkpoint_exits_with_a_message(model_dir, tmp_path):
    copy = tmp_path / "no_checkpoint"
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "eval"))
    result = run_module("daah_tf.evaluate", f"--model_dir={copy}")
    assert result.returncode != 0
    assert "holds no checkpoint" in result.stderr and "Traceback" not in result.stderr
    assert not (copy / "eval").exists()

