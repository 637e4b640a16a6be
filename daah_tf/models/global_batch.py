"""The batch the triplet losses see under tf.distribute: every replica's codes and labels.

The triplet ranking loss compares items across the whole batch; gathering the codes
(differentiably) lets each replica compute the loss of the global batch, so a distributed step
equals the single-device step at the same global batch (with `guarded_update.scaled_loss`'s
1/replicas).
"""

import tensorflow as tf


def global_batch(outputs, labels):
    """Gathers the codes and labels of every replica's batch (a no-op on one replica).

    Args:
        outputs: the dict of `DAAH._attend_and_hash` on this replica's batch: (b, q) codes under
            keys ending in "codes", masks under the others (left as they are).
        labels: (b, L) multi-hot labels.

    Returns:
        (outputs, labels) with every "*codes" entry (B, q) and labels (B, L) float32, B the
        global batch; unchanged outside a multi-replica context.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return outputs, labels
    devices = tf.distribute.get_strategy().extended.worker_devices

    def gather(value):
        if not value.device and len(devices) == 1:
            # all_gather sends each tensor to its own device; under MultiWorkerMirroredStrategy
            # (one device per worker) the step is traced without a device scope, and a tensor
            # without a device fails there ("destinations can not be empty").
            with tf.device(devices[0]):
                value = tf.identity(value)
        # all_gather forgets the static shape past the batch axis; the losses read it (the
        # hash centres are built for L labels and q bits at trace time).
        return tf.ensure_shape(context.all_gather(value, axis=0), [None, *value.shape[1:]])

    gathered = {name: gather(value) if name.endswith("codes") else value
                for name, value in outputs.items()}
    return gathered, gather(tf.cast(labels, tf.float32))
