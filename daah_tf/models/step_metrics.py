"""The metrics of `DAAH`'s train and test steps: the trackers, which of them a configuration
reports, and how one step updates them.

Every reported metric reaches Keras' logs, hence TensorBoard (`keras.callbacks.TensorBoard`,
as `epoch_<name>`) and the History; the progress bar shows only a few (`progress_bar`).
"""

import keras
import tensorflow as tf

from daah_tf import losses

# Order of the metrics in the logs.
LOSS_TERMS = (
    "loss",
    "retrieval_loss",
    "adversarial_loss",
    "attention_objective",
    "ret_t2i",
    "ret_i2t",
    "ret_i2i",
    "ret_t2t",
    "adv_t2i",
    "adv_i2t",
    "quantization_loss",
    "center_loss",
    "dcmh_nll",
    "dcmh_quantization",
    "dcmh_balance",
)
STATISTICS = (
    "nonfinite_batches",
    "gradient_norm_hash",
    "gradient_norm_attention",
    "attended_fraction_image",
    "attended_fraction_text",
    "bit_balance_image",
    "bit_balance_text",
)


def make_trackers():
    """{name: keras metric} for every name of LOSS_TERMS and STATISTICS: means over the epoch's
    batches, except "nonfinite_batches", a count."""
    trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_TERMS + STATISTICS}
    trackers["nonfinite_batches"] = keras.metrics.Sum(name="nonfinite_batches")
    return trackers


def reported(objective_terms, attention, adversarial):
    """The set of metric names a configuration feeds (the ablations have fewer terms).

    Args:
        objective_terms: the names of the objective's loss terms (`objectives.*.terms`).
        attention: whether the model has attention (masks to measure).
        adversarial: whether the attention player plays.
    """
    names = list(objective_terms)
    if attention:
        names += ["attended_fraction_image", "attended_fraction_text"]
    if adversarial:
        names += ["attention_objective", "gradient_norm_attention"]
    names.append("gradient_norm_hash")
    return set(names + ["bit_balance_image", "bit_balance_text", "nonfinite_batches"])


def bit_balance(codes):
    """Mean over bits of |mean over the batch of sign(H)|: 0 when every bit splits the batch
    in half, 1 when every bit is constant. codes: (B, q) -> scalar float32."""
    signs = tf.cast(losses.binary_codes(codes), tf.float32)
    return tf.reduce_mean(tf.abs(tf.reduce_mean(signs, axis=0)))


def track(trackers, terms, outputs, applied, on_nonfinite):
    """Updates the trackers with one step.

    Args:
        trackers: the dict of `make_trackers`.
        terms: {name: scalar float32} loss terms of the step.
        outputs: this replica's dict of `DAAH._attend_and_hash`: (b, q) "*_codes" and, with
            attention, "image_mask" (b, H, W) or (b, d) and "text_mask" (b, d) in {0, 1}.
        applied: scalar bool, whether every player's update was applied. A refused step counts
            in nonfinite_batches and, with on_nonfinite="skip_batch", leaves the loss metrics
            untouched.
        on_nonfinite: "stop" or "skip_batch".
    """
    # A Sum metric adds up its replicas' states: each replica counts its share of the batch.
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    trackers["nonfinite_batches"].update_state((1.0 - tf.cast(applied, tf.float32)) / replicas)
    weight = 1.0 if on_nonfinite == "stop" else tf.cast(applied, tf.float32)
    for name, value in terms.items():
        if on_nonfinite == "skip_batch":
            value = tf.where(applied, value, tf.zeros_like(value))  # NaN * 0 is NaN
        trackers[name].update_state(value, sample_weight=weight)
    for modality in ("image", "text"):
        codes = outputs[f"{modality}_codes"]
        trackers[f"bit_balance_{modality}"].update_state(bit_balance(codes))
        if f"{modality}_mask" in outputs:
            fraction = tf.reduce_mean(tf.cast(outputs[f"{modality}_mask"], tf.float32))
            trackers[f"attended_fraction_{modality}"].update_state(fraction)


def results(trackers, names):
    """{name: scalar result} of the trackers in `names`, as a step returns them to Keras."""
    values = {name: tracker.result() for name, tracker in trackers.items() if name in names}
    strategy = tf.distribute.get_strategy()
    if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode()):
        # With several workers Keras reduces the step's outputs with
        # strategy.reduce(MEAN, axis=0), which needs an axis: give each scalar one.
        values = {name: tf.reshape(value, (1,)) for name, value in values.items()}
    return values
