"""tools/sweep.py: the presets spell out the flags their claims are about, and the table reads
the numbers from a run's metrics.json and training log (no training here)."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tools"))

import sweep  # noqa: E402


def test_presets_spell_out_the_game_and_the_swept_flag():
    for name, (_, rows) in sweep.PRESETS.items():
        for _, flags in rows:
            assert flags[0].startswith("--flagfile=flags/"), (name, flags)
    for _, flags in sweep.PRESETS["attention_lr"][1]:
        # The paper's game: every deviation of docs/design.md's table set back.
        assert {"--mask_estimator=probability", "--attention_objective=adversarial",
                "--retrieval_view=attended", "--adversarial_weight=1",
                "--attention_schedule=constant"} <= set(flags)
    rates = [f for _, flags in sweep.PRESETS["attention_lr"][1] for f in flags
             if f.startswith("--attention_learning_rate=")]
    assert rates == [f"--attention_learning_rate={r}" for r in ("1e-3", "1e-4", "1e-5")]
    for _, flags in sweep.PRESETS["attention_gradient"][1]:
        assert any(f.startswith("--mask_estimator=") for f in flags)
        assert any(f.startswith("--attention_objective=") for f in flags)


def test_row_reads_metrics_and_the_last_logged_training_values(tmp_path):
    run_dir = tmp_path / "dcmh_weights" / "00"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps(
        dict(i2t_map=0.25, t2i_map=0.1777, chance_map=0.1084, best_epoch=16, seconds=19.0)))
    (tmp_path / "dcmh_weights" / "00.log").write_text(
        "bit_balance_image: 0.5000 - bit_balance_text: 0.4000 - val_bit_balance_text: 0.9\n"
        "bit_balance_image: 0.1400 - bit_balance_text: 0.1200 - val_bit_balance_text: 0.9\n")
    row = sweep.run_row("dcmh q=1 b=1", ("--flagfile=flags/wiki_16bit.cfg", "--loss=dcmh"),
                        "../shared/data/wiki", str(tmp_path / "dcmh_weights"), 0)
    assert row["reused"] and row["bit_balance_text"] == 0.12  # train, not val_, last epoch
    assert row["command"] == ("python -m daah_tf.train --flagfile=flags/wiki_16bit.cfg "
                              "--loss=dcmh --data_dir=../shared/data/wiki")
    line = sweep.table([row]).splitlines()[-1]
    assert line.startswith("| dcmh q=1 b=1 | 0.2500 | 0.1777 | 0.1084 | 16 | - | 0.14 / 0.12 |")
    assert "19.0 (reused)" in line
