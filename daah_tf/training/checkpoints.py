"""Checkpoints of the model, BOTH optimizers, the epoch and the model-selection state.

tf.train.Checkpoint writes its files and then its index atomically, so an interrupted save never
becomes "latest". A latest checkpoint that still cannot be read (a truncated copy, a bad disk)
falls back to the one before it, with a warning.
"""

import os

import tensorflow as tf
from absl import logging

from daah_tf import faults
from daah_tf.run import BEST_CHECKPOINT_DIR, CHECKPOINTS_DIR


class RunCheckpoints:
    """The latest `keep` checkpoints in DIR/checkpoints and the best one in DIR/checkpoints/best.

    Args:
        model: a compiled DAAH model (its optimizers built).
        model_dir: the run directory.
        keep: how many latest checkpoints to keep.
        weight_average: the run's `WeightAverage`, saved and restored with the rest; None
            without averaging.

    Attributes:
        epoch: int64 variable, epochs completed.
        best_score: float32 variable, the best validation score so far (-1 before any).
        best_epoch: int64 variable, the epoch of that score (0 before any).
    """

    def __init__(self, model, model_dir, keep, weight_average=None):
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.best_score = tf.Variable(-1.0, dtype=tf.float32, trainable=False, name="best_score")
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")
        self.evaluations_without_gain = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.nonfinite_batches = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.weight_average = weight_average
        tracked = dict(
            model=model,
            hash_optimizer=model.hash_optimizer,
            attention_optimizer=model.attention_optimizer,
            epoch=self.epoch,
            best_score=self.best_score,
            best_epoch=self.best_epoch,
            evaluations_without_gain=self.evaluations_without_gain,
            nonfinite_batches=self.nonfinite_batches,
        )
        if weight_average is not None:  # runs without it keep the checkpoint layout they had
            tracked["weight_average"] = weight_average
        self.checkpoint = tf.train.Checkpoint(**tracked)
        directory = os.path.join(model_dir, CHECKPOINTS_DIR)
        self.latest = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=keep)
        self.best = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(directory, BEST_CHECKPOINT_DIR), max_to_keep=1
        )

    def save(self, epoch):
        """Saves after `epoch` epochs (epoch counted from 1)."""
        self.epoch.assign(epoch)
        # The callback runs once the files are complete and before the manager lists them.
        options = tf.train.CheckpointOptions(
            experimental_write_callbacks=[lambda: faults.point("checkpoint_written")])
        return self.latest.save(checkpoint_number=epoch, options=options)

    def save_best(self, epoch, score):
        self.epoch.assign(epoch)
        self.best_score.assign(score)
        self.best_epoch.assign(epoch)
        self.evaluations_without_gain.assign(0)
        return self.best.save(checkpoint_number=epoch)

    # expect_partial: every object of ours must match (asserted), but a checkpoint may hold
    # entries nobody reads back (e.g. save_counter), which TensorFlow would warn about at exit.

    def restore_latest(self, model_dir=None):
        """Restores the newest readable checkpoint; returns its path, or None if there is none.

        model_dir: read another run directory's checkpoints instead (a worker other than the
            chief resumes from the chief's, so that every worker starts from the same epoch).
        """
        paths = self.latest.checkpoints
        if model_dir is not None:
            state = tf.train.get_checkpoint_state(os.path.join(model_dir, CHECKPOINTS_DIR))
            paths = list(state.all_model_checkpoint_paths) if state else []
        for path in reversed(paths):
            try:
                self.checkpoint.read(path).assert_existing_objects_matched().expect_partial()
                return path
            except Exception as error:  # noqa: BLE001 - a damaged file raises many kinds
                # The next read overwrites every variable, so a partial read here is harmless.
                logging.warning("Checkpoint %s is unreadable (%s); trying the one before it.",
                                path, error)
        return None

    def restore_best(self):
        """Restores the best checkpoint if there is one; returns its path or None."""
        path = self.best.latest_checkpoint
        if path is not None:
            self.checkpoint.read(path).assert_existing_objects_matched().expect_partial()
        return path
