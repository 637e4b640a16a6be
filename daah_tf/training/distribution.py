"""tf.distribute strategies for `--distribution` and who writes the run directory.

    none          the default strategy (one device)
    mirrored      MirroredStrategy over the local GPUs (or logical CPU devices, see
                  `--logical_cpu_devices`, for trying it on a laptop)
    multi_worker  MultiWorkerMirroredStrategy configured by the TF_CONFIG environment
                  variable (see the README for a two-host example)

With several workers every worker runs the same command; only the chief writes checkpoints,
TensorBoard, metrics and the export into --model_dir. The others write their (required)
checkpoint copies into --model_dir/workers/<task id>/; on a rerun each worker resumes from the
chief's checkpoints when it can read them (one host, or a shared disk), else from its own copy.
A worker that dies stops the others within seconds (the coordination service's heartbeats),
with a WorkerLostError instead of a hang.
"""

import os

import tensorflow as tf

from daah_tf.config import STRATEGIES


def split_cpu(count):
    """Splits the CPU into `count` logical devices; must run before TensorFlow uses a device."""
    if count <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )


def make_strategy(name):
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"distribution must be one of {STRATEGIES}, got {name!r}")


class WorkerLostError(RuntimeError):
    """Another worker of a multi-worker run stopped (crashed, killed, unreachable)."""


# What a collective op raises when a peer is gone: the coordination service stops getting its
# heartbeats (about 10 s) and aborts every pending collective.
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
               tf.errors.AbortedError, tf.errors.CancelledError)


def worker_lost(error, model_dir):
    """The WorkerLostError for a collective that failed with `error` in a multi-worker run."""
    lines = [line.strip() for line in str(getattr(error, "message", error)).splitlines()]
    # Keep what names the failure; drop TensorFlow's generic lines.
    lines = [line[:240] for line in lines if line and not line.startswith(
        ("Graph execution error", "Detected at node", "File ", "[[", "The error could be"))]
    return WorkerLostError(
        f"a worker of this multi-worker run stopped, so training cannot go on "
        f"({type(error).__name__}: {' '.join(lines[:3])}). The last complete epoch's checkpoint "
        f"is in {model_dir}/checkpoints; rerun the same command on every worker to resume."
    )


def skip_keras_symbolic_build(model):
    """Stops `fit`/`evaluate` from reducing their first batch across workers.

    Keras 3 (keras-team/keras issue 20329) calls `strategy.reduce("MEAN", batch)` on the first
    batch of a distributed dataset to build the model symbolically; MultiWorkerMirroredStrategy
    with two or more workers refuses a dict batch there ("Attempt to convert a value
    ({'image': PerReplica...}) ... dict"). Our model and both optimizers are built before
    `fit`, so that symbolic build has nothing to do: skip it for this model only.
    """
    if not model.built:
        raise ValueError("build the model before skipping Keras' symbolic build")
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def is_chief(strategy):
    """True for the worker that owns the run directory (always, without multi_worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


def worker_dir(model_dir, strategy):
    """Where this worker writes: model_dir for the chief, a private folder for the others."""
    if is_chief(strategy):
        return model_dir
    return os.path.join(model_dir, "workers", str(strategy.cluster_resolver.task_id))
