"""Tests of tools/report.py and tools/visualize_attention.py on smoke-sized runs.

    .venv/bin/python -m pytest -q tests/test_report.py

One report command (synthetic, 16 bits, seeds 0 and 1, daah, dcmh and the linear floor,
smoke-sized through --extra_flags) trains the four runs once per session, in the background;
a second invocation, in this process, reuses them; visualize_attention reuses a daah run.
"""

import contextlib
import io
import os
import pathlib
import sys
import time

import _background
import numpy as np
import pytest

pytest.importorskip("matplotlib")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "tools"))

import report  # noqa: E402
import report_seeds  # noqa: E402
import visualize_attention  # noqa: E402

SMOKE = os.path.join(REPO_ROOT, "flags", "smoke.cfg")


def _report_args(root):
    return ["--dataset=synthetic", "--bits=16", "--seeds=0,1", "--methods=daah,dcmh,floor",
            "--epochs=1",
            f"--extra_flags=--flagfile={SMOKE}", f"--runs_dir={root / 'runs'}",
            f"--out={root / 'report.md'}"]


def _run_report(argv):
    """(exit status, stdout, seconds) of report.main(argv) in this process."""
    output = io.StringIO()
    started = time.time()
    with contextlib.redirect_stdout(output):
        status = report.main(argv)
    return status, output.getvalue(), time.time() - started


# The first invocation is the command, `python tools/report.py` (four smoke-sized training runs,
# the floors, the PR curves): started in the background when a test that reads it is collected
# (tests/_background.py), in the command's own folder.
reads_the_report = pytest.mark.prefetch(
    "report", os.path.join(REPO_ROOT, "tools", "report.py"),
    *_report_args(pathlib.Path(_background.FOLDER)), timeout=1200)


@pytest.fixture(scope="module")
def smoke_report():
    """(folder of runs/ and report.md, printed output) of the first report invocation."""
    done = _background.result("report")
    assert done.returncode == 0, done.stdout + done.stderr
    return pathlib.Path(done.folder), done.stdout


def _rows(text, section):
    table = text.split(f"## {section}")[1].split("\n## ")[0]
    return [line for line in table.splitlines() if line.startswith("| ")]


@reads_the_report
def test_report_writes_mean_std_table_floor_and_pr_figure(smoke_report):
    root, output = smoke_report
    assert output.count("training into") == 4  # 2 methods x 2 seeds
    assert output.count("ridge + projection") == 2  # the floor of each seed's daah run
    text = (root / "report.md").read_text()
    rows = _rows(text, "mAP@all")
    assert rows[0] == "| method | 16 bits I->T | 16 bits T->I |"
    assert [r.split("|")[1].strip() for r in rows[1:]] == [
        "DAAH (`daah`)", "DCMH-style loss, no attention (`dcmh`)",
        "linear floor: ridge + projection + sign, on the DAAH run's inputs (`floor`)",
        "chance (random ranking)"]
    for row in rows[1:4]:  # mean ± std over the two seeds, each in [0, 1]
        for cell in row.strip("|").split("|")[1:]:
            mean, std = (float(v) for v in cell.split("±"))
            assert 0.0 <= mean <= 1.0 and 0.0 <= std <= 1.0, row
    # Synthetic data is drawn from the seed: the report says the splits differ.
    assert "splits differ between seeds" in text
    # Attended shares for daah (both modalities; last epoch, then the selected model's on the
    # query set), bit balances, IoU with the object boxes and its three references (random,
    # every touched cell, the best cell mask).
    diagnostics = {r.split("|")[1].strip(): r for r in _rows(text, "Attention and codes")[1:]}
    daah = diagnostics["DAAH (`daah`)"].strip("|").split("|")
    assert len(daah) == 12 and all("±" in v for v in daah[2:]), daah
    assert all(0.0 < float(v.split("±")[0]) <= 1.0 for v in daah[6:8]), daah
    random_iou, touched_iou, best_iou = (float(v.split("±")[0]) for v in daah[9:])
    assert random_iou <= best_iou and touched_iou <= best_iou <= 1.0, daah
    assert "`floor`" not in "".join(diagnostics)
    # DAAH minus each other method, per seed: mean ± standard error (k/n seeds at or above).
    paired = {r.split("|")[1].strip(): r for r in _rows(text, "DAAH against each method")[1:]}
    assert set(paired) == {"DCMH-style loss, no attention (`dcmh`)",
                           "linear floor: ridge + projection + sign, on the DAAH run's inputs "
                           "(`floor`)"}
    for row in paired.values():
        for cell in row.strip("|").split("|")[1:]:
            assert cell.strip().endswith("/2)") and "±" in cell, row
    assert "![PR curves at 16 bits](report_pr.png)" in text
    # the cells' train commands
    assert "--loss=dcmh --attention=none --center_weight=0 --seed=1" in text
    for seed in (0, 1):
        assert (root / "runs" / "synthetic" / "daah_16bit" / f"seed{seed}" /
                "linear_floor.json").exists()
    png = (root / "report_pr.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


@reads_the_report
def test_report_second_invocation_reuses_runs(smoke_report):
    root, _ = smoke_report

    def files():
        return {path: path.stat().st_mtime_ns for path in (root / "runs").rglob("*")}

    before = files()
    status, output, _ = _run_report(_report_args(root))
    assert status == 0, output
    # four runs, two floors and the two cached PR curves (seed 0)
    assert output.count("reusing") == 8, output
    assert "training into" not in output
    # Reuse means no run was touched (what a timing bound stood for, without the clock).
    assert files() == before
    assert "| reused |" in (root / "report.md").read_text()


def test_report_rejects_unknown_method(tmp_path, capsys):
    assert report.main(["--methods=daah,bogus", f"--runs_dir={tmp_path}"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_train_command_order_keeps_cell_flags_last():
    args = report.parse_args(["--dataset=synthetic", "--bits=32", "--epochs=3",
                              "--extra_flags=--bits=8 --epochs=99 --seed=5"])
    command = report.train_command(args, "no_attention", 32, 2)
    assert command[3].endswith(os.path.join("flags", "demo.cfg"))
    # absl keeps a flag's last value: the cell's bits and epochs win over --extra_flags.
    assert command.index("--bits=32") > command.index("--bits=8")
    assert command.index("--epochs=3") > command.index("--epochs=99")
    assert command.index("--seed=2") > command.index("--seed=5")
    assert "--attention=none" in command
    assert command[-1].endswith(os.path.join("synthetic", "no_attention_32bit", "seed2"))


def test_folder_dataset_uses_its_named_flagfile():
    args = report.parse_args(["--dataset=folder", "--name=fashion9k", "--data_dir=x",
                              "--bits=64", "--methods=daah,floor"])
    assert args.seeds == [0, 1, 2]
    command = report.train_command(args, "daah", 64, 0)
    assert command[3].endswith(os.path.join("flags", "fashion9k_64bit.cfg"))
    with open(command[3][len("--flagfile="):]) as stream:
        lines = stream.read().splitlines()
    assert lines[0].startswith("# python -m daah_tf.train --flagfile=flags/fashion9k_64bit.cfg")
    settings = {line.split("=")[0] for line in lines if line.startswith("--")}
    # data, bits, epochs and batch size only: no method setting per dataset
    assert settings <= {"--dataset", "--bits", "--epochs", "--batch_size", "--model_dir"}


def test_floor_needs_daah_and_seeds_are_integers(tmp_path, capsys):
    assert report.main(["--methods=dcmh,floor", f"--runs_dir={tmp_path}"]) == 2
    assert report.main(["--seeds=0,x", f"--runs_dir={tmp_path}"]) == 2
    assert "floor" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_last_epoch_statistics_skips_validation_values(tmp_path):
    (tmp_path / "train.log").write_text(
        "1/1 - attended_fraction_image: 0.5000 - val_attended_fraction_image: 0.9\n"
        "1/1 - attended_fraction_image: 0.2500 - bit_balance_text: 1.0000e-01 - "
        "val_attended_fraction_image: 0.8\n")
    found = report_seeds.last_epoch_statistics(str(tmp_path), {"bit_balance_image": 0.3})
    assert found == {"attended_fraction_image": 0.25, "bit_balance_text": 0.1,
                     "bit_balance_image": 0.3}
    assert report_seeds.fmt_mean_std([0.2, 0.4], 2) == "0.3000 ± 0.1414"
    assert report_seeds.fmt_mean_std([0.2, None], 2) == "0.2000 (n=1)"


def test_paired_differences_match_numpy():
    rng = np.random.default_rng(0)
    seeds = [0, 1, 2, 3, 5]
    maps = {m: rng.uniform(0.2, 0.8, size=len(seeds)) for m in ("daah", "no_attention")}

    def cell(method, seed, value):
        return {"method": method, "bits": 64, "seed": seed, "metrics": {"t2i_map": value}}

    cells = [cell(m, s, maps[m][i]) for m in maps for i, s in enumerate(seeds)]
    cells.append(cell("no_attention", 9, 0.5))  # a seed DAAH lacks: not paired
    cells.append(dict(cell("daah", 4, None), metrics=None))  # an unfinished run: not paired
    differences = report_seeds.paired_differences(cells, "no_attention", 64, "t2i_map")
    expected = maps["daah"] - maps["no_attention"]
    np.testing.assert_allclose(differences, expected)
    mean, error = expected.mean(), expected.std(ddof=1) / np.sqrt(len(expected))
    wins = int((expected >= 0).sum())
    assert report_seeds.fmt_paired(differences) == f"{mean:+.4f} ± {error:.4f} ({wins}/5)"
    assert report_seeds.fmt_paired([0.25]) == "+0.2500 (1/1)"
    assert report_seeds.fmt_paired([]) == "n/a"
    lines = report_seeds.paired_table(cells, ["daah", "no_attention"], [64],
                                      {"no_attention": "no attention"}, {"t2i": "T->I"})
    assert lines[0] == "| DAAH minus | 64 bits T->I |"
    assert lines[2] == f"| no attention (`no_attention`) | {mean:+.4f} ± {error:.4f} ({wins}/5) |"
    assert report_seeds.paired_table(cells, ["no_attention"], [64], {}, {"t2i": "T->I"}) == []


@reads_the_report
def test_visualize_attention_png_has_one_row_per_example(smoke_report, tmp_path):
    from PIL import Image

    model_dir = smoke_report[0] / "runs" / "synthetic" / "daah_16bit" / "seed0"
    out = tmp_path / "attention.png"
    assert visualize_attention.main([f"--model_dir={model_dir}", "--num=3", f"--out={out}"]) == 0
    with Image.open(out) as image:
        assert image.size == visualize_attention.figure_size_pixels(3)
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10  # drawn, not blank
    assert visualize_attention.figure_size_pixels(5)[1] > visualize_attention.figure_size_pixels(
        3)[1]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]  # atomic write


@reads_the_report
def test_word_scores_in_unit_interval(smoke_report):
    model_dir = smoke_report[0] / "runs" / "synthetic" / "daah_16bit" / "seed0"
    example = visualize_attention.load_examples(str(model_dir), 4, words=5)
    assert len(example["rows"]) == 4 and example["image_mask"].shape[0] == 4
    scores = example["word_scores"]
    scored = scores[np.isfinite(scores)]
    assert scored.size > 0
    assert np.all((scored >= 0.0) & (scored <= 1.0))
    for words in example["words"]:
        assert 0 < len(words) <= 5
        values = [score for _, score in words]
        assert values == sorted(values, reverse=True)
        assert all(name != "[out of vocabulary]" for name, _ in words)


def test_word_scores_bounds_from_the_mask():
    """All dimensions attended: every present word scores 1; none attended: 0; absent: NaN."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(6, 4))

    def encoder(bow, training=False):
        return np.maximum(np.asarray(bow) @ weights + 0.1, 0.0)

    bow = np.array([[0, 1, 2, 0, 0, 1], [1, 0, 0, 3, 0, 0]], np.float32)
    ones = visualize_attention.word_scores(encoder, bow, np.ones((2, 4)))
    zeros = visualize_attention.word_scores(encoder, bow, np.zeros((2, 4)))
    present = bow > 0
    assert np.all(np.isnan(ones[~present])) and np.all(np.isnan(zeros[~present]))
    own = encoder(np.eye(6)) - encoder(np.zeros((1, 6)))
    has_energy = (own**2).sum(axis=1) > 0
    assert np.allclose(ones[present & has_energy[None]], 1.0)
    assert np.allclose(zeros[present & has_energy[None]], 0.0)
    half = visualize_attention.word_scores(encoder, bow, np.array([[1, 1, 0, 0]] * 2))
    expected = (own[:, :2] ** 2).sum(1) / (own**2).sum(1)
    assert np.allclose(half[0, 1], expected[1]) and np.allclose(half[1, 3], expected[3])


def test_vector_dataset_figure_draws_feature_masks(tmp_path):
    """A Wiki-like example (128-d image features, no pictures) draws bars, one row each."""
    from PIL import Image

    rng = np.random.default_rng(1)
    num = 2
    example = {
        "dataset": "wiki", "image_kind": "features", "split": "query", "rows": np.arange(num),
        "images": rng.random((num, 128)), "image_mask": rng.random((num, 128)) > 0.6,
        "boxes": None, "labels": [["art"], ["music"]], "texts": None,
        "text_mask": rng.random((num, 32)) > 0.5, "word_scores": rng.random((num, 10)),
        "words": [[("#3", 0.9), ("#1", 0.4)], []], "attended_text_fraction": np.array([0.4, 0.5]),
        "mask_iou": None, "random_mask_iou": None,
    }
    out = tmp_path / "vector.png"
    assert visualize_attention.draw_figure(example, str(out)) == \
        visualize_attention.figure_size_pixels(num)
    with Image.open(out) as image:
        assert image.size == visualize_attention.figure_size_pixels(num)
