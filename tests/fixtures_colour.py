"""One colour op through the production jitter (`simclr.augment.colour.apply_jitter`):
the op under test with the image's amounts, the other three at their identity."""

from __future__ import annotations

import tensorflow as tf
from simclr.augment import colour


def one_colour_op(images: tf.Tensor, op: str, amounts: tf.Tensor) -> tf.Tensor:
    """float32 [B,H,W,3] in [0, 1] -> the op's result (clipped to [0, 1], as every jitter
    op is) with per-image `amounts` [B]; op "brightness" adds (v1)."""
    ones, zeros = tf.ones_like(amounts), tf.zeros_like(amounts)
    identity = {"brightness": zeros, "contrast": ones, "saturation": ones, "hue": zeros}
    jitter = colour.Jitter(
        apply=tf.ones_like(amounts, tf.bool),
        **{name: amounts if name == op else value for name, value in identity.items()},
        order=tf.broadcast_to(tf.range(4), [tf.shape(amounts)[0], 4]),
    )
    planes = [images[..., c] for c in range(3)]
    return tf.stack(colour.apply_jitter(planes, jitter, True, barrier=zeros), axis=-1)
