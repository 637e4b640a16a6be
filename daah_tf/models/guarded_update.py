"""One player's update in the minimax step: the loss it differentiates, and the application of
its gradients unless that loss or those gradients are NaN or Inf.

A refused update leaves the player's weights AND its optimizer's state (moments, iteration
count) as they were, on one device and under any tf.distribute strategy. `DAAH.train_step`
calls these once per player (docs/design.md, "Minimax").
"""

import keras
import tensorflow as tf


def scaled_loss(optimizer, loss):
    """The loss a player differentiates; call it inside the player's GradientTape.

    optimizer.apply sums each replica's gradients across replicas, so dividing by the replica
    count turns that sum into the mean of the per-replica objectives; the optimizer then applies
    its float16 loss scale (a no-op for a plain optimizer).

    Args:
        optimizer: the player's optimizer (possibly a `keras.optimizers.LossScaleOptimizer`).
        loss: scalar float tensor, the player's objective to minimise.

    Returns:
        Scalar tensor of the loss's dtype.
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return optimizer.scale_loss(loss / tf.cast(replicas, loss.dtype))


def is_finite(optimizer, loss, gradients):
    """Whether a player's update may be applied: its loss, and (except under a
    LossScaleOptimizer) each of its gradients, hold only finite values.

    A LossScaleOptimizer (float16) meets non-finite gradients while finding its loss scale and
    already skips them itself, so only the loss is checked then.

    Args:
        optimizer: the player's optimizer.
        loss: scalar float tensor (unscaled).
        gradients: list of tensors shaped like the player's variables, or None.

    Returns:
        Scalar bool tensor (this replica's verdict).
    """
    finite = tf.reduce_all(tf.math.is_finite(loss))
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        for gradient in gradients:
            if gradient is not None:
                finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(gradient)))
    return finite


def apply_if_finite(optimizer, gradients, variables, loss):
    """Applies `gradients` to `variables` with `optimizer` unless they or `loss` are not finite.

    Args:
        optimizer: the player's optimizer, built over `variables`.
        gradients: list of tensors (or None), one per variable, as from tape.gradient.
        variables: the player's variables.
        loss: scalar float tensor, the player's (unscaled) objective of this step.

    Returns:
        Scalar bool tensor: whether the update was applied (the same on every replica).
    """
    finite = is_finite(optimizer, loss, gradients)

    def update():
        optimizer.apply(gradients, variables)
        return tf.constant(True)

    if not tf.distribute.has_strategy():
        return tf.cond(finite, update, lambda: tf.constant(False))
    # Every replica must take the same branch (the update all-reduces the gradients; a replica
    # that skipped it would leave the others waiting), so the verdict is global.
    context = tf.distribute.get_replica_context()
    refusals = context.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
    finite = tf.equal(refusals, 0.0)
    if tf.__internal__.distribute.strategy_supports_no_merge_call():
        return tf.cond(finite, update, lambda: tf.constant(False))
    # Otherwise optimizer.apply is a cross-replica merge, which cannot sit inside a tf.cond taken
    # in replica context; take the tf.cond in the cross-replica context instead and run the
    # update for each replica from there (as keras' LossScaleOptimizer does).

    def merge(distribution, finite, gradients):
        finite = distribution.experimental_local_results(finite)[0]

        def update_each_replica():
            distribution.extended.call_for_each_replica(
                optimizer.apply, args=(gradients, variables))
            return tf.constant(True)

        return tf.cond(finite, update_each_replica, lambda: tf.constant(False))

    context.merge_call(merge, args=(finite, gradients))
    return finite
