"""Helper run in a subprocess by tests/test_losses.py (it needs 2 logical CPUs,
which must be configured before TensorFlow initialises its devices).

Computes NT-Xent loss, accuracy, gradients (w.r.t. the projections and w.r.t. the
Dense layer producing them) and one LARS step, once on one device with global
batch B and once under MirroredStrategy over 2 logical CPUs with the same global
batch (each replica's loss scaled by 1/num_replicas, gradients summed). Prints one
JSON object with both results.
"""

import json

import tensorflow as tf

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from simclr.losses import nt_xent_loss, nt_xent_loss_and_accuracy  # noqa: E402
from simclr.optim import LARS  # noqa: E402

GLOBAL_BATCH, D_IN, D_OUT, TEMPERATURE, REPLICAS = 8, 6, 5, 0.2, 2
_rng = np.random.default_rng(0)
X_A = _rng.normal(size=(GLOBAL_BATCH, D_IN)).astype(np.float32)
# Correlated views, so the contrastive accuracy is neither 0 nor 1.
X_B = X_A + 0.8 * _rng.normal(size=(GLOBAL_BATCH, D_IN)).astype(np.float32)
WEIGHTS = [
    _rng.normal(size=(D_IN, D_OUT)).astype(np.float32),
    _rng.normal(size=(D_OUT,)).astype(np.float32),
]


def _dense() -> keras.layers.Dense:
    layer = keras.layers.Dense(D_OUT, name="proj")
    layer.build((None, D_IN))
    layer.set_weights(WEIGHTS)
    return layer


def _optimizer() -> LARS:
    # lr and weight decay large enough that a wrong gradient shows in the step.
    return LARS(learning_rate=1.0, weight_decay=0.1, trust_coefficient=0.1)


def _loss_and_grads(layer, x_a, x_b, scale):
    with tf.GradientTape(persistent=True) as tape:
        z_a, z_b = layer(x_a), layer(x_b)
        tape.watch([z_a, z_b])
        loss, accuracy = nt_xent_loss_and_accuracy(z_a, z_b, TEMPERATURE)
        scaled = loss * scale
    weight_grads = tape.gradient(scaled, layer.trainable_variables)
    z_grads = tape.gradient(scaled, [z_a, z_b])
    return loss, accuracy, weight_grads, z_grads


def single_device() -> dict:
    layer, opt = _dense(), _optimizer()
    loss, accuracy, weight_grads, z_grads = _loss_and_grads(layer, X_A, X_B, 1.0)
    opt.apply_gradients(zip(weight_grads, layer.trainable_variables, strict=True))
    return {
        "loss": float(loss),
        "accuracy": float(accuracy),
        "weight_grads": [g.numpy().tolist() for g in weight_grads],
        "z_grads": [g.numpy().tolist() for g in z_grads],
        "weights_after": [w.tolist() for w in layer.get_weights()],
    }


def mirrored() -> dict:
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == REPLICAS
    with strategy.scope():
        layer, opt = _dense(), _optimizer()
        opt.build(layer.trainable_variables)
    n = GLOBAL_BATCH // REPLICAS

    def shard(ctx):
        i = ctx.replica_id_in_sync_group
        return X_A[i * n : (i + 1) * n], X_B[i * n : (i + 1) * n]

    x_a, x_b = strategy.experimental_distribute_values_from_function(shard)

    def replica_step(x_a, x_b):
        loss, accuracy, weight_grads, z_grads = _loss_and_grads(
            layer, x_a, x_b, 1.0 / strategy.num_replicas_in_sync
        )
        opt.apply_gradients(zip(weight_grads, layer.trainable_variables, strict=True))
        return loss, accuracy, weight_grads, z_grads

    @tf.function
    def step():
        loss, accuracy, weight_grads, z_grads = strategy.run(replica_step, args=(x_a, x_b))
        return (
            strategy.reduce("MEAN", loss, axis=None),
            strategy.reduce("MEAN", accuracy, axis=None),
            [strategy.reduce("SUM", g, axis=None) for g in weight_grads],
            z_grads,
            loss,
        )

    loss, accuracy, weight_grads, z_grads, per_replica_loss = step()
    local = strategy.experimental_local_results
    return {
        "loss": float(loss),
        "accuracy": float(accuracy),
        "weight_grads": [g.numpy().tolist() for g in weight_grads],
        "z_grads": [np.concatenate([t.numpy() for t in local(g)]).tolist() for g in z_grads],
        "weights_after": [w.tolist() for w in layer.get_weights()],
        "per_replica_loss": [float(t) for t in local(per_replica_loss)],
        # What each replica would get with only its own negatives: must differ.
        "local_only_loss": [
            float(
                nt_xent_loss(
                    _dense()(X_A[i * n : (i + 1) * n]),
                    _dense()(X_B[i * n : (i + 1) * n]),
                    TEMPERATURE,
                )
            )
            for i in range(REPLICAS)
        ],
    }


if __name__ == "__main__":
    print(json.dumps({"single": single_device(), "mirrored": mirrored()}))
