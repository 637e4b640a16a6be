"""The Keras callback that evaluates, selects, checkpoints and logs at each epoch's end."""

import contextlib

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from daah_tf import faults
from daah_tf.models import player_optimizers


def _learning_rate(optimizer):
    return float(keras.ops.convert_to_numpy(player_optimizers.inner(optimizer).learning_rate))


def mask_overlay(images, masks):
    """Images with their attention mask: attended positions bright, the rest dimmed.

    images: (B, S, S, 3) float in [0, 255]; masks: (B, h, w) {0,1}. Returns (B, S, S, 3) in [0,1].
    """
    size = tf.shape(images)[1:3]
    upsampled = tf.image.resize(tf.cast(masks, tf.float32)[..., None], size, method="nearest")
    return tf.clip_by_value(images / 255.0 * (0.25 + 0.75 * upsampled), 0.0, 1.0)


class NonFiniteTrainingError(RuntimeError):
    """A loss or gradient became NaN or Inf (with --on_nonfinite=stop)."""


class NonFiniteGuard(keras.callbacks.Callback):
    """Acts on the batches the train step refused to apply (non-finite loss or gradients).

    The step itself never applies a player's non-finite update (each player's stands alone).
    With policy "stop", the first such batch raises NonFiniteTrainingError naming the global
    step and the loss terms that were not finite, before the epoch's checkpoint is written, so
    the last checkpoint stays the last good one.
    With "skip_batch", the epoch's count is added to `counter` and reported.

    Args:
        policy: "stop" or "skip_batch".
        steps_per_epoch: to turn (epoch, batch) into a global step.
        counter: int64 variable, total skipped batches (saved in checkpoints).
        print_fn: where the report goes.
    """

    def __init__(self, policy, steps_per_epoch, counter, print_fn=print):
        super().__init__()
        self.policy = policy
        self.steps_per_epoch = steps_per_epoch
        self.counter = counter
        self.print_fn = print_fn
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        if self.policy != "stop" or not float(logs.get("nonfinite_batches", 0.0)):
            return
        step = self.epoch * self.steps_per_epoch + batch + 1
        terms = [name for name, value in logs.items()
                 if name != "nonfinite_batches" and not np.isfinite(float(value))]
        what = (f"loss term(s) {', '.join(terms)}" if terms
                else "a gradient (every loss term was finite)")
        raise NonFiniteTrainingError(
            f"step {step} (epoch {self.epoch + 1}, batch {batch + 1}): {what} became NaN or "
            "Inf; that player's update was not applied and training stopped. The last "
            "checkpoint is the last good one. Rerun with --on_nonfinite=skip_batch to skip "
            "such batches."
        )

    def on_epoch_end(self, epoch, logs=None):
        skipped = int(round(float((logs or {}).get("nonfinite_batches", 0.0))))
        if skipped:
            self.counter.assign_add(skipped)
            self.print_fn(f"epoch {epoch + 1}: skipped {skipped} batch(es) with NaN/Inf "
                          f"({int(self.counter.numpy())} in the run so far)")


class TrainingMonitor(keras.callbacks.Callback):
    """At the end of each epoch: validation mAP (every `eval_every`), model selection on it,
    early stopping, checkpoints, and TensorBoard scalars and mask images.

    Args:
        checkpoints: the run's `RunCheckpoints`.
        validate: () -> {"i2t": mAP, "t2i": mAP} on the validation split, or None without one.
        epochs: the last epoch of the run.
        eval_every: evaluate every N epochs (and always after the last).
        patience: stop after this many evaluations without a better score (0: never).
        log_dir: DIR/tensorboard.
        mask_batch: a fixed batch of validation inputs whose image masks are logged, or None.
        print_fn: where the one-line summary per evaluation goes.
        weight_average: a `WeightAverage` to update after every batch, whose averaged weights
            are the ones validated and saved as the best checkpoint; None: the live weights.
    """

    def __init__(self, checkpoints, validate, epochs, eval_every, patience, log_dir,
                 mask_batch=None, print_fn=print, weight_average=None):
        super().__init__()
        self.checkpoints = checkpoints
        self.weight_average = weight_average
        self.validate = validate
        self.epochs = epochs
        self.eval_every = eval_every
        self.patience = patience
        self.mask_batch = mask_batch
        self.print_fn = print_fn
        self.train_writer = tf.summary.create_file_writer(f"{log_dir}/train")
        self.validation_writer = tf.summary.create_file_writer(f"{log_dir}/validation")

    def on_train_batch_end(self, batch, logs=None):
        if self.weight_average is not None:
            self.weight_average.update()
        faults.point("train_batch")  # a crash test's kill mid-epoch (off by default)

    def _selected_weights(self):
        """The weights that are validated and saved as the best: the averaged ones if any."""
        if self.weight_average is None:
            return contextlib.nullcontext()
        return self.weight_average.swapped()

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        model = self.model
        with self.train_writer.as_default(step=done):
            tf.summary.scalar("learning_rate/hash", _learning_rate(model.hash_optimizer))
            tf.summary.scalar("learning_rate/attention",
                              _learning_rate(model.attention_optimizer))
        if done % self.eval_every == 0 or done == self.epochs:
            self._evaluate(done, logs or {})
        if self.mask_batch is not None and model.image_attention is not None:
            masks = model.image_mask(self.mask_batch["image"])
            if len(masks.shape) == 3:  # spatial masks only; vector masks are not pictures
                with self.validation_writer.as_default(step=done):
                    tf.summary.image("attention/image_mask",
                                     mask_overlay(self.mask_batch["image"], masks), max_outputs=8)
        self.checkpoints.save(done)
        self.train_writer.flush()
        self.validation_writer.flush()

    def _evaluate(self, done, logs):
        # The latest checkpoint (saved after this) holds the live weights and the averages, to
        # resume; the best one, saved here, holds the averaged weights as the model's.
        with self._selected_weights():
            maps = self.validate()
            if maps is None:
                return
            score = float(np.mean([maps["i2t"], maps["t2i"]]))
            improved = score > float(self.checkpoints.best_score.numpy())
            if improved:
                self.checkpoints.save_best(done, score)
        with self.validation_writer.as_default(step=done):
            for name, value in maps.items():
                tf.summary.scalar(f"map/{name}", value)
        if not improved:
            self.checkpoints.evaluations_without_gain.assign_add(1)
        self.print_fn(
            f"epoch {done}/{self.epochs}  loss {logs.get('loss', float('nan')):.4f}  "
            f"val_loss {logs.get('val_loss', float('nan')):.4f}  "
            f"validation mAP i2t {maps['i2t']:.4f} t2i {maps['t2i']:.4f}"
            + ("  (best so far)" if improved else
               f"  (best {float(self.checkpoints.best_score.numpy()):.4f} "
               f"at epoch {int(self.checkpoints.best_epoch.numpy())})")
        )
        waited = int(self.checkpoints.evaluations_without_gain.numpy())
        if self.patience and waited >= self.patience:
            logging.info("Early stopping: %d evaluations without a better validation mAP.",
                         waited)
            self.print_fn(f"Early stopping after epoch {done}: no better validation mAP in "
                          f"{waited} evaluations.")
            self.model.stop_training = True
