"""Choosing the tf.distribute strategy, and who is the chief."""

from __future__ import annotations

import glob
import os

import tensorflow as tf

from simclr import cluster
from simclr.errors import UserError


def configure_cpu_devices(count: int) -> None:
    """Splits the host CPU into `count` logical devices (must run before TF initialises)."""
    if count <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError:
        # TensorFlow's devices are initialised already (e.g. run() called twice in one
        # process): fine if they are what was asked for, an error otherwise.
        have = len(tf.config.list_logical_devices("CPU"))
        if have != count:
            raise UserError(
                f"--num_cpu_devices {count}: TensorFlow has already initialised {have} CPU "
                "device(s) in this process; set it before TensorFlow starts (a fresh process)"
            ) from None


def _tpu_configured() -> bool:
    # Cheap signals only: probing the TPU resolver off-GCP would wait on the metadata server.
    return bool(os.environ.get("TPU_NAME")) or bool(glob.glob("/dev/accel*"))


def _tpu_strategy() -> tf.distribute.Strategy:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        os.environ.get("TPU_NAME", "local")
    )
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _local_devices() -> list[str]:
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return [d.name for d in gpus]
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def resolve_strategy_name(name: str) -> str:
    """`auto` -> tpu | multi_worker | mirrored | default, by what this machine has."""
    if name != "auto":
        return name
    if _tpu_configured():
        return "tpu"
    if cluster.training_tasks() > 1:
        return "multi_worker"
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return "mirrored"
    return "default"


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Builds the strategy for --strategy (after resolve_strategy_name)."""
    name = resolve_strategy_name(name)
    if name == "tpu":
        try:
            return _tpu_strategy()
        except (ValueError, RuntimeError) as err:
            raise UserError(f"--strategy=tpu: no TPU found ({str(err).splitlines()[0]})") from None
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise UserError("--strategy=multi_worker needs TF_CONFIG naming the workers")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=_local_devices())
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(_local_devices()[0])
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The one task that writes checkpoints, summaries and outputs (`cluster.is_chief`
    of the task the strategy's resolver names; every other strategy is its own run)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    tasks = resolver.cluster_spec().as_dict()
    return cluster.Cluster(tasks, resolver.task_type, resolver.task_id or 0).is_chief


def device_kind() -> str:
    """ "tpu", "gpu" or "cpu": what the replicas run on (for precision/XLA defaults)."""
    if tf.config.list_logical_devices("TPU"):
        return "tpu"
    if tf.config.list_logical_devices("GPU"):
        return "gpu"
    return "cpu"


def gpu_supports_bfloat16() -> bool:
    """Ampere (compute capability 8.0) and later run bfloat16 at full speed."""
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability and capability[0] < 8:
            return False
    return True
