"""The training progress bar of `DAAH.fit`: only the few numbers a person watches.

A DAAH step reports some twenty metrics (`step_metrics`); Keras' progress bar would print all
of them, and their val_ twins, on every line. This one prints WATCHED (and the val_ ones) in
that order; every metric still reaches the other callbacks (TensorBoard, History, the
trainer's), which get the logs unfiltered.
"""

import keras

# What the progress bar (--verbose=1) and the per-epoch line (--verbose=2) show, when the
# configuration reports it. The bit balances stay: tools/sweep.py reads the last epoch's from a
# --verbose=2 log.
WATCHED = (
    "loss",
    "retrieval_loss",
    "adversarial_loss",
    "attended_fraction_image",
    "attended_fraction_text",
    "bit_balance_image",
    "bit_balance_text",
)


def watched(logs):
    """The WATCHED entries of a Keras logs dict, then their val_ ones, in WATCHED order."""
    logs = logs or {}
    names = list(WATCHED) + [f"val_{name}" for name in WATCHED]
    return {name: logs[name] for name in names if name in logs}


class WatchedProgressBar(keras.callbacks.ProgbarLogger):
    """keras.callbacks.ProgbarLogger printing only `watched(logs)` of a training run."""

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, watched(logs))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, watched(logs))


def with_progress_bar(callbacks, verbose):
    """The `callbacks` argument of fit with a WatchedProgressBar in place of the one Keras would
    add (when verbose is not 0); a list that has its own ProgbarLogger, or a CallbackList, is
    returned as given."""
    if verbose == 0 or isinstance(callbacks, keras.callbacks.CallbackList):
        return callbacks
    callbacks = keras.tree.flatten(callbacks) if callbacks else []
    if not any(isinstance(callback, keras.callbacks.ProgbarLogger) for callback in callbacks):
        callbacks.append(WatchedProgressBar())
    return callbacks
