"""tf.distribute strategies for `--distribution` and who writes the run directory.

    none          the default strategy (one device)
    mirrored      MirroredStrategy over the local GPUs (or logical CPU devices, see
                  `--logical_cpu_devices`, for trying it on a laptop)
    multi_worker  MultiWorkerMirroredStrategy configured by the TF_CONFIG environment
                  variable (see the README for a two-host example)

With several workers every worker runs the same command; only the chief writes checkpoints,
TensorBoard, metrics and the export into --model_dir. The others write their (required)
checkpoint copies into --model_dir/workers/<task id>/, which nothing reads back.
"""

import os

import tensorflow as tf

STRATEGIES = ("none", "mirrored", "multi_worker")


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
