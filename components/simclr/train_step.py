"""Pretraining's compiled step: both views augmented on the device, NT-Xent over the
global batch, LARS, and the replicas' votes (stop, non-finite)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from simclr.augment import AugmentPolicy
from simclr.augment.ops import augment_pair, augment_windows
from simclr.losses import OBJECTIVE_SCALE, nt_xent_loss_and_accuracy
from simclr.train_config import PretrainConfig
from simclr.train_state import TrainState


def augmentation_seed(seed: int, step, replica_id):
    """int32 seed of (seed, global step, replica id), stateless, so a resume reproduces it."""
    key = tf.stack(
        [tf.cast(seed, tf.int64), tf.cast(step, tf.int64) * 1024 + tf.cast(replica_id, tf.int64)]
    )
    return tf.random.stateless_uniform(
        [], key, minval=0, maxval=2**31 - 1, dtype=tf.int32, alg="philox"
    )


def all_finite(tensors) -> Any:
    """Scalar bool tensor: every element of every tensor is finite."""
    return tf.reduce_all(
        tf.stack([tf.reduce_all(tf.math.is_finite(tf.cast(t, tf.float32))) for t in tensors])
    )


def make_train_step(
    strategy: Any, state: TrainState, config: PretrainConfig, policy: AugmentPolicy, jit: bool
) -> Any:
    """Returns train_step(iterator, step, stop) -> [mean loss, mean accuracy, stop votes,
    non-finite votes] (a replica votes non-finite if any weight or moving statistic of
    its encoder or head is NaN/inf after the step's update).

    Per replica: both views are augmented on the device, encoded in one batch, projected,
    scored with NT-Xent over the global batch; the objective is OBJECTIVE_SCALE x that
    loss (the official code's scale, which its learning rate and weight decay assume),
    scaled by 1/replicas (Keras sums the replicas' gradients). The returned loss is the
    paper's NT-Xent (mean over the 2N anchors). With one replica and `jit` the whole step
    is one XLA program; with several only the augmentation is (the rest has
    cross-replica collectives).
    """
    replicas = strategy.num_replicas_in_sync
    loss_scaled = (
        hasattr(state.optimizer, "scale_loss") and "LossScale" in type(state.optimizer).__name__
    )
    variables = state.encoder.trainable_variables + state.head.trainable_variables
    watched = state.encoder.variables + state.head.variables  # + BatchNorm moving stats
    size = int(state.encoder.inputs[0].shape[1])

    def views(batch, seed):
        if isinstance(batch, dict):  # image datasets: crops cut in tf.data (make_input)
            return augment_windows(batch, policy, seed, size)
        return augment_pair(batch, policy, seed)

    augment = tf.function(views, jit_compile=jit)

    def replica_step(images, step, stop):
        ctx = tf.distribute.get_replica_context()
        view_a, view_b = augment(
            images, augmentation_seed(config.seed, step, ctx.replica_id_in_sync_group)
        )
        with tf.GradientTape() as tape:
            z = state.head(
                state.encoder(tf.concat([view_a, view_b], 0), training=True), training=True
            )
            z_a, z_b = tf.split(z, 2, axis=0)
            loss, accuracy = nt_xent_loss_and_accuracy(z_a, z_b, config.temperature)
            scaled = OBJECTIVE_SCALE * loss / replicas
            if loss_scaled:
                scaled = state.optimizer.scale_loss(scaled)
        grads = tape.gradient(scaled, variables)
        state.optimizer.apply_gradients(zip(grads, variables, strict=True))
        # After the update: a non-finite gradient that was applied (not skipped by the
        # float16 loss scale) shows in the weights; BatchNorm moving stats are included.
        with tf.control_dependencies([loss]):
            bad = 1.0 - tf.cast(all_finite(watched), tf.float32)
        return tf.stack([loss / replicas, accuracy / replicas, stop, bad])

    if jit and replicas == 1:
        replica_step = tf.function(replica_step, jit_compile=True)

    @tf.function
    def train_step(iterator, step, stop):
        per_replica = strategy.run(replica_step, args=(next(iterator), step, stop))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return train_step
