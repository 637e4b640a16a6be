"""python -m daah_tf.train [--flagfile=flags/NAME.cfg] [--flag=value ...]

Trains DAAH (with no flags: on the built-in synthetic dataset, in minutes on a CPU), resumes a
run found in --model_dir, and writes metrics.json and a SavedModel there. See flags/*.cfg.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: no C++ chatter

from absl import app, logging  # noqa: E402

from daah_tf import flags as daah_flags  # noqa: E402
from daah_tf.data.base import DatasetError  # noqa: E402
from daah_tf.training import run_directory  # noqa: E402


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])} (flags start with --)")
    if not daah_flags.FLAGS["verbosity"].present:
        # TensorFlow logs every checkpoint write at INFO; the run prints its own progress.
        logging.set_verbosity(logging.WARNING)
    config = daah_flags.config_from_flags()
    from daah_tf.training.distribution import WorkerLostError
    from daah_tf.training.monitor import NonFiniteTrainingError
    from daah_tf.training.trainer import train_and_evaluate

    flags_text = daah_flags.effective_flags_text()
    try:
        train_and_evaluate(config, flags_text)
    except (DatasetError, run_directory.RunDirectoryError, NonFiniteTrainingError,
            WorkerLostError) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    app.run(main)
