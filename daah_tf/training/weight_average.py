"""An exponential moving average of the model's trainable weights (`--weight_average_decay`).

Training steps with the live weights; validation, model selection, the best checkpoint, the
final evaluation and the SavedModel use the averaged ones (Polyak averaging). Why: a run's
checkpoint is the one whose validation mAP was the highest, and on small data (Wiki: 217
validation pairs) that mAP jumps by several hundredths between evaluations of one run, so the
selected epoch is a noisy maximum; averaged weights move slowly, so consecutive evaluations
differ less and the selected weights are less a matter of luck. Every method (DAAH and its
ablations) is averaged alike.

    average_t = d_t * average_{t-1} + (1 - d_t) * w_t,   d_t = min(decay, (1 + t) / (10 + t))

with t the updates so far (the warm-up of tf.train.ExponentialMovingAverage's num_updates: the
average forgets the initialisation within the first steps rather than over 1 / (1 - decay)).
Non-trainable variables (batch-norm statistics of a trainable backbone) are not averaged.
"""

import contextlib

import tensorflow as tf


def _tf_variable(variable):
    """The tf.Variable behind a Keras 3 variable (TensorFlow backend), or the variable itself."""
    return variable if isinstance(variable, tf.Variable) else variable.value


class WeightAverage(tf.Module):
    """The averages of `variables` and the count of updates (checkpointed with the run).

    Args:
        variables: the model's trainable variables (both players'), in a fixed order.
        decay: in (0, 1); the average spans about 1 / (1 - decay) steps.

    Attributes:
        averages: one float variable per entry of `variables`, same shapes, initialised to
            their values.
        updates: int64 variable, t of the module docstring.
    """

    def __init__(self, variables, decay, name="weight_average"):
        super().__init__(name=name)
        if not 0.0 < decay < 1.0:
            raise ValueError(f"weight_average_decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self._live = [_tf_variable(variable) for variable in variables]
        self.averages = [
            tf.Variable(tf.identity(live), trainable=False, name=f"average_{index}")
            for index, live in enumerate(self._live)
        ]
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="updates")

    @tf.function
    def update(self):
        """One step of the average: after each training batch."""
        t = tf.cast(self.updates, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + t) / (10.0 + t))
        for average, live in zip(self.averages, self._live, strict=True):
            # average - (1 - d) (average - w) = d average + (1 - d) w
            average.assign_sub((1.0 - decay) * (average - tf.cast(live, average.dtype)))
        self.updates.assign_add(1)

    @tf.function
    def swap(self):
        """Exchanges the live and the averaged weights (a second call undoes it)."""
        for average, live in zip(self.averages, self._live, strict=True):
            held = tf.identity(live)  # read before either assignment (ordered by TensorFlow)
            live.assign(tf.cast(average, live.dtype))
            average.assign(tf.cast(held, average.dtype))

    @contextlib.contextmanager
    def swapped(self):
        """Within the block the model holds the averaged weights; the live ones come back after,
        also when the block raises."""
        self.swap()
        try:
            yield
        finally:
            self.swap()
