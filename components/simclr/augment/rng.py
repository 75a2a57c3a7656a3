"""Stateless randomness for the batched augmentation: a counter-based hash and the
table of uniforms each view draws.

TF's stateless Philox ops give different numbers under XLA than in TF kernels (checked:
tf.random.stateless_uniform in and out of jit_compile), so views would change with the
compilation mode. Instead: a counter-based hash (Wellons' "lowbias32" mixer) of plain
uint32 integer ops, bit-identical in eager, tf.function and XLA on any device.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# tf.image.sample_distorted_bounding_box as the official code calls it.
CROP_ATTEMPTS = 100
MIN_OBJECT_COVERED = 0.1
# Each view draws one table of uniforms [B, NUM_DRAWS]; every transform owns fixed
# columns, so turning one transform on or off leaves the others' randomness unchanged.
CROP_COLS = (0, 4 * CROP_ATTEMPTS)  # [aspect, height, y, x] per attempt
FLIP_COL = CROP_COLS[1]
JITTER_COL = FLIP_COL + 1  # apply, brightness, contrast, saturation, hue, 4 order keys
GRAY_COL = JITTER_COL + 9
BLUR_COL = GRAY_COL + 1  # apply, sigma
NUM_DRAWS = BLUR_COL + 2
_MASK32 = 0xFFFFFFFF


def mix(x: tf.Tensor) -> tf.Tensor:
    """lowbias32: a bijective avalanche mixer on uint32."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))
    x = x * tf.constant(0x7FEB352D, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(15, tf.uint32)))
    x = x * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))


def seed_key(seed: int | tf.Tensor) -> tf.Tensor:
    """A uint32 scalar key from a Python int or an integer tensor (scalar or [2])."""
    if isinstance(seed, (int, np.integer)):
        seed = tf.constant(((int(seed) + 2**63) & (2**64 - 1)) - 2**63, tf.int64)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    if seed.shape.rank != 0 and (seed.shape.rank != 1 or seed.shape[0] is None):
        raise ValueError(f"seed must be an integer scalar or a [2] vector, got shape {seed.shape}")
    seed = tf.reshape(seed, [-1])
    key = tf.constant(0x5EED, tf.uint32)
    for i in range(seed.shape[0]):
        low = tf.cast(tf.bitwise.bitwise_and(seed[i], _MASK32), tf.uint32)
        high = tf.cast(
            tf.bitwise.bitwise_and(tf.bitwise.right_shift(seed[i], 32), _MASK32), tf.uint32
        )
        key = mix(tf.bitwise.bitwise_xor(mix(key + high), low))
    return key


def fold(key: tf.Tensor, data: int) -> tf.Tensor:
    """A new key derived from `key` and a small integer (one per transform / view)."""
    return mix(
        tf.bitwise.bitwise_xor(key, mix(tf.constant(data * 0x9E3779B9 & _MASK32, tf.uint32)))
    )


def uniform(key: tf.Tensor, shape: list, minval: float = 0.0, maxval: float = 1.0) -> tf.Tensor:
    """Uniform float32 in [minval, maxval); element [i, ...] depends only on key and i."""
    count = tf.reduce_prod(tf.stack(shape)) if shape else 1
    counter = tf.cast(tf.reshape(tf.range(count), shape), tf.uint32)
    bits = mix(tf.bitwise.bitwise_xor(mix(counter), key) + tf.constant(0x9E3779B9, tf.uint32))
    unit = tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32)), tf.float32) * 2.0**-24
    return minval + (maxval - minval) * unit


def draws(key: tf.Tensor, batch_size: int | tf.Tensor) -> tf.Tensor:
    """The view's table of uniforms in [0, 1): [B, NUM_DRAWS]."""
    return uniform(key, [batch_size, NUM_DRAWS])


def scale(u: tf.Tensor, lo: float, hi: float) -> tf.Tensor:
    """Uniforms in [0, 1) mapped onto [lo, hi)."""
    return lo + (hi - lo) * u
