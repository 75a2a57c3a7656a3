"""Helper run in a subprocess by tests/test_optim.py (2 logical CPUs must be configured
before TensorFlow initialises its devices).

Under MirroredStrategy over 2 logical CPUs, takes two LARS steps through a loss-scale
optimizer: in the first, replica 1's gradients are forced to inf (replica 0's stay
finite); the second is clean. `python _loss_scale_check.py keras|global` picks Keras's
own LossScaleOptimizer or simclr.optim.GlobalLossScaleOptimizer; prints one JSON object
with the weights and loss scales seen.
"""

import json
import sys

import tensorflow as tf

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from simclr.optim import LARS, GlobalLossScaleOptimizer  # noqa: E402

INITIAL_SCALE = 1024.0


def run(optimizer_class) -> dict:
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    keras.utils.set_random_seed(0)
    with strategy.scope():
        layer = keras.layers.Dense(3, name="fc")
        layer.build((None, 4))
        optimizer = optimizer_class(LARS(0.5, weight_decay=1e-4), initial_scale=INITIAL_SCALE)
        optimizer.build(layer.trainable_variables)
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(x).repeat())
    iterator = iter(dataset)

    def replica_step(batch, poison):
        ctx = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer(batch) - 1.0)) / 2.0
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, layer.trainable_variables)
        overflow = tf.logical_and(poison, tf.equal(ctx.replica_id_in_sync_group, 1))
        grads = [tf.where(overflow, tf.fill(tf.shape(g), np.inf), g) for g in grads]
        optimizer.apply_gradients(zip(grads, layer.trainable_variables, strict=True))

    @tf.function
    def step(poison):
        strategy.run(replica_step, args=(next(iterator), poison))

    def weights():
        return [v.numpy().tolist() for v in layer.trainable_variables]

    seen = {"initial": weights()}
    step(tf.constant(True))
    seen["after_overflow"], seen["scale_after_overflow"] = (
        weights(),
        float(optimizer.dynamic_scale.numpy()),
    )
    step(tf.constant(False))
    seen["after_clean"], seen["scale_after_clean"] = (
        weights(),
        float(optimizer.dynamic_scale.numpy()),
    )
    return seen


OPTIMIZERS = {"keras": keras.optimizers.LossScaleOptimizer, "global": GlobalLossScaleOptimizer}

if __name__ == "__main__":
    # One optimizer per process: two MirroredStrategy programs in one process collide
    # on collective instance keys.
    print(json.dumps({"initial_scale": INITIAL_SCALE, **run(OPTIMIZERS[sys.argv[1]])}))
