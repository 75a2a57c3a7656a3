"""Gaussian blur, batched: separable, zero-padded ("SAME"), one sigma per image."""

from __future__ import annotations

import tensorflow as tf

from simclr.augment import rng
from simclr.augment.policy import AugmentPolicy
from simclr.augment.rng import BLUR_COL


def blur_radius(side: int, policy: AugmentPolicy) -> int:
    """Kernel radius for a side of `side` pixels: kernel 2r+1 with r = int(side*f)//2."""
    return int(side * policy.blur_kernel_fraction) // 2


def blur_kernels(sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """[B, 2r+1] normalised Gaussian kernels, one per image."""
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernels = tf.exp(-tf.square(taps) / (2.0 * tf.square(sigma[:, None])))
    return kernels / tf.reduce_sum(kernels, axis=1, keepdims=True)


def _conv_axis(x: tf.Tensor, kernels: tf.Tensor, axis: int) -> tf.Tensor:
    """Zero-padded ("SAME") 1-D convolution along `axis` (1 or 2), per-image kernels."""
    radius = (kernels.shape[1] - 1) // 2
    size = x.shape[axis]
    pad = [[0, 0]] * 4
    pad[axis] = [radius, radius]
    padded = tf.pad(x, pad)
    out = 0.0
    for tap in range(2 * radius + 1):
        window = padded[:, tap : tap + size] if axis == 1 else padded[:, :, tap : tap + size]
        out += kernels[:, tap, None, None, None] * window
    return out


def blur(x: tf.Tensor, draws: tf.Tensor, policy: AugmentPolicy) -> tf.Tensor:
    """The policy's blur of views float32 [B,H,W,3] for a table of draws [B, NUM_DRAWS]."""
    radius = min(blur_radius(x.shape[1], policy), blur_radius(x.shape[2], policy))
    if radius == 0:
        return x
    apply = draws[:, BLUR_COL] < policy.blur_prob
    sigma = rng.scale(draws[:, BLUR_COL + 1], policy.blur_sigma_min, policy.blur_sigma_max)
    delta = tf.one_hot(radius, 2 * radius + 1, dtype=tf.float32)  # identity kernel
    kernels = tf.where(apply[:, None], blur_kernels(sigma, radius), delta)
    return _conv_axis(_conv_axis(x, kernels, 1), kernels, 2)
