"""python -m daah_tf.evaluate --model_dir=DIR [--checkpoint=best|latest] [--tie_rule=index|average]

Evaluates a trained run on its query and database splits: restores the run's model (its best
checkpoint by default), encodes both splits into binary codes, and prints mAP@all, mAP@K,
precision@K and precision within Hamming radius 2 for I->T, T->I, I->I and T->T, with the chance
level. The dataset and every data setting come from DIR/config.json and the split from
DIR/splits.json, so the numbers are those of exactly the training run's split.

Writes DIR/eval/metrics.json, DIR/eval/pr_curve.csv, DIR/eval/pr_curve.png and
DIR/eval/precision_at_k.png (with matplotlib, the `plot` extra), and TensorBoard scalars in
DIR/tensorboard/eval. See docs/evaluation_commands.md.

This module is the command (flags, errors); the work is daah_tf.evaluation.run_report's.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: no C++ chatter

import logging as pylogging  # noqa: E402

from absl import app, flags, logging  # noqa: E402

from daah_tf.data.base import DatasetError  # noqa: E402
from daah_tf.data.registry import DATASETS  # noqa: E402
from daah_tf.evaluation.retrieval import TIE_RULES  # noqa: E402
from daah_tf.evaluation.run_report import evaluate_run  # noqa: E402
from daah_tf.run import CHECKPOINTS, RunError  # noqa: E402

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """Registers this command's flags (called only when the module runs as a program).

    Not at import: a process may import this module next to daah_tf.flags, which defines
    --model_dir, --dataset and --data_dir too.
    """
    flags.DEFINE_string("model_dir", None, "Run directory written by daah_tf.train.",
                        flag_values=flag_values)
    flags.DEFINE_enum("dataset", None, DATASETS,
                      "Override the run's dataset (default: from config.json).",
                      flag_values=flag_values)
    flags.DEFINE_string("data_dir", None, "Override the run's data folder (e.g. moved data).",
                        flag_values=flag_values)
    flags.DEFINE_string("split_query", "query", "Split whose items are the queries.",
                        flag_values=flag_values)
    flags.DEFINE_string("split_database", "database", "Split whose items are retrieved.",
                        flag_values=flag_values)
    flags.DEFINE_integer("top_k", 1000, "K of mAP@K.", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("precision_k", 100, "K of precision@K.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_enum("tie_rule", "index", TIE_RULES,
                      "mAP with equal distances: index (database order, as published numbers) "
                      "or average (tie-aware, order-independent).", flag_values=flag_values)
    flags.DEFINE_enum("checkpoint", "best", CHECKPOINTS,
                      "best: the checkpoint selected on validation; latest: the last one.",
                      flag_values=flag_values)
    flags.mark_flag_as_required("model_dir", flag_values=flag_values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])} (flags start with --)")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines drown the table
        # Restoring for inference leaves the checkpoint's save_counter unread, which TensorFlow
        # reports at exit as a warning that means nothing here.
        pylogging.getLogger("tensorflow").setLevel(pylogging.ERROR)
    try:
        evaluate_run(FLAGS.model_dir, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir,
                     split_query=FLAGS.split_query, split_database=FLAGS.split_database,
                     top_k=FLAGS.top_k, precision_k=FLAGS.precision_k, tie_rule=FLAGS.tie_rule,
                     checkpoint=FLAGS.checkpoint)
    except (RunError, DatasetError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    define_flags()
    app.run(main)
