"""python -m daah_tf.train [--flagfile=flags/NAME.cfg] [--flag=value ...]

Trains DAAH (with no flags: on the built-in synthetic dataset, in minutes on a CPU), resumes a
run found in --model_dir, and writes metrics.json and a SavedModel there. See flags/*.cfg.
TensorFlow's C++ logs are off; DAAH_VERBOSE=1 brings them back (daah_tf/quiet.py).
"""

from absl import app, flags, logging

from daah_tf import flags as daah_flags
from daah_tf import quiet  # before TensorFlow loads (in main): no C++ chatter

# The flags live in daah_tf.flags; made key flags of this program, `--help` lists them.
flags.adopt_module_key_flags(daah_flags)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])} (flags start with --)")
    if not daah_flags.FLAGS["verbosity"].present and not quiet.verbose():
        # TensorFlow logs every checkpoint write at INFO; the run prints its own progress.
        logging.set_verbosity(logging.WARNING)
    config = daah_flags.config_from_flags()
    # Imported here, not at the top: they load TensorFlow (seconds), which `--help` and a bad
    # flag do not need.
    from daah_tf.data.base import DatasetError
    from daah_tf.training import run_directory
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
