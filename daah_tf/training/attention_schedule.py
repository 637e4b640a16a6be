"""The attention player's learning rate over the epochs (`--attention_schedule`).

"cosine" lowers the attention player's Adam learning rate from `--attention_learning_rate` to 0
along half a cosine over the run's `--epochs`, so that the masks settle late in training and the
hashing player's last epochs fit a fixed view instead of a moving target. The hashing player's
learning rate is not scheduled (the ablations, which have no attention player, train the same).
"constant" (the default) is the paper's fixed rate; README "Results" has both measured.
"""

import math

import keras

from daah_tf.models import player_optimizers


def cosine_learning_rate(base, epoch, epochs):
    """base * (1 + cos(pi * epoch / epochs)) / 2: `base` at epoch 0, 0 at epoch `epochs`.

    Args:
        base: the learning rate at the first epoch.
        epoch: the 0-based epoch about to start.
        epochs: the run's budget (`--epochs`), >= 1.
    """
    return base * 0.5 * (1.0 + math.cos(math.pi * min(epoch, epochs) / epochs))


class AttentionLearningRate(keras.callbacks.Callback):
    """Sets the attention optimizer's learning rate at the start of every epoch.

    Stateless: the rate is a function of the epoch index alone, so a resumed run (which starts
    `fit` at its `initial_epoch`) continues on the same curve.

    Args:
        schedule: "constant" (`base` every epoch) or "cosine" (`cosine_learning_rate`).
        base: `--attention_learning_rate`.
        epochs: `--epochs`.
    """

    def __init__(self, schedule, base, epochs):
        super().__init__()
        self.schedule = schedule
        self.base = float(base)
        self.epochs = int(epochs)

    def rate(self, epoch):
        if self.schedule == "cosine":
            return cosine_learning_rate(self.base, epoch, self.epochs)
        return self.base

    def on_epoch_begin(self, epoch, logs=None):
        player_optimizers.inner(self.model.attention_optimizer).learning_rate.assign(
            self.rate(epoch))
