"""Colour jitter and grayscale, batched: each op equals the `tf.image` op the official
code applies image by image (tests/test_augment.py checks each to 1e-4 under XLA).

The ops work on the image as three channel planes [B,H,W] (vectorises well on CPU) with
per-image amounts [B]; saturation and hue in closed form (no HSV round trip).
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from simclr.augment import rng
from simclr.augment.barrier import materialize
from simclr.augment.policy import AugmentPolicy
from simclr.augment.rng import GRAY_COL, JITTER_COL

# Grey level weights of tf.image.rgb_to_grayscale (the official code's to_grayscale).
LUMA = (0.2989, 0.5870, 0.1140)
# Jitter op numbers in the random order (the official code's order when not random).
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)


class Jitter(NamedTuple):
    """One jitter draw per image: whether to jitter (bool [B]), the four ops' amounts
    (float32 [B]: brightness delta or factor, contrast, saturation and hue) and the
    order of the ops (int32 [B, 4])."""

    apply: tf.Tensor
    brightness: tf.Tensor
    contrast: tf.Tensor
    saturation: tf.Tensor
    hue: tf.Tensor
    order: tf.Tensor


def _per_image(value: tf.Tensor) -> tf.Tensor:
    return value[:, None, None]


def _saturation_ratio(factor: tf.Tensor, top: tf.Tensor, bottom: tf.Tensor) -> tf.Tensor:
    """tf.image.adjust_saturation (HSV: s = clip(s * factor, 0, 1), h and v kept) in
    closed form: with v = max, s = (v - min) / v, each channel is v - s * v * k(h), so the
    new image is v + r * (x - v), with per pixel r = min(factor, v / (v - min)) (s * factor
    clipped at 1); pixels with v <= 0 have s = 0 in TensorFlow's conversion and become
    grey at v (r = 0)."""
    spread = top - bottom
    ratio = tf.minimum(_per_image(factor), top / tf.where(spread > 0, spread, 1.0))
    return tf.where(top > 0, ratio, 0.0)


def _hue(planes: list, delta: tf.Tensor, top: tf.Tensor, bottom: tf.Tensor) -> list:
    """tf.image.adjust_hue: the hue h in [0, 6) turns by 6 * delta; max and min are kept.
    Each channel of the result is max - (max - min) * t(h) with the HSV-to-RGB ramps
    t_R = clip(2 - |h - 3|), t_G = clip(|h - 2| - 1), t_B = clip(|h - 4| - 1) (no branches)."""
    r, g, b = planes
    spread = top - bottom
    inverse = 1.0 / tf.where(spread > 0, spread, 1.0)
    red_top, green_top = r >= top, g >= top
    rise = tf.where(red_top, g - b, tf.where(green_top, b - r, r - g))
    sector = tf.where(red_top, 0.0, tf.where(green_top, 2.0, 4.0))
    hue = rise * inverse + sector + 6.0 * _per_image(delta)
    hue = hue - 6.0 * tf.floor(hue * (1.0 / 6.0))
    ramps = (2.0 - tf.abs(hue - 3.0), tf.abs(hue - 2.0) - 1.0, tf.abs(hue - 4.0) - 1.0)
    return [top - spread * tf.clip_by_value(t, 0.0, 1.0) for t in ramps]


def _max_min(planes: list) -> tuple[tf.Tensor, tf.Tensor]:
    r, g, b = planes
    return tf.maximum(tf.maximum(r, g), b), tf.minimum(tf.minimum(r, g), b)


def jitter_draw(draws: tf.Tensor, policy: AugmentPolicy) -> Jitter:
    """The policy's jitter for a table of draws [B, NUM_DRAWS]."""
    u = draws[:, JITTER_COL : JITTER_COL + 9]
    bright, contrast = policy.brightness, policy.contrast
    saturation, hue = policy.saturation, policy.hue
    if policy.color_jitter_version == "v1":
        brightness = rng.scale(u[:, 1], -bright, bright)  # random_brightness
    else:
        brightness = rng.scale(u[:, 1], max(0.0, 1.0 - bright), 1.0 + bright)
    if policy.color_jitter_random_order:
        order = tf.argsort(u[:, 5:9], axis=1)
    else:
        order = tf.broadcast_to(tf.range(4), tf.shape(u[:, 5:9]))
    return Jitter(
        apply=u[:, 0] < policy.color_jitter_prob,
        brightness=brightness,
        contrast=rng.scale(u[:, 2], max(0.0, 1.0 - contrast), 1.0 + contrast),
        saturation=rng.scale(u[:, 3], max(0.0, 1.0 - saturation), 1.0 + saturation),
        hue=rng.scale(u[:, 4], -hue, hue),
        order=order,
    )


def color_jitter(planes: list, draws: tf.Tensor, policy: AugmentPolicy) -> list:
    """The policy's colour jitter (the official `color_jitter_rand`) of planes [B,H,W]."""
    additive = policy.color_jitter_version == "v1"
    return apply_jitter(planes, jitter_draw(draws, policy), additive, barrier=draws)


def apply_jitter(planes: list, jitter: Jitter, additive: bool, barrier: tf.Tensor) -> list:
    """The four ops in each image's order, each followed by a clip to [0, 1]; images not
    jittered keep theirs. Brightness adds its amount when `additive` (v1), else scales.
    `barrier`: any tensor of values >= 0 known only at run time (`materialize`).

    Every slot computes hue and one "linear" op per image, a * x + b, that is brightness
    (a = 1 and b = delta, or a = factor), contrast (a = factor, b = (1 - factor) * the
    channel's mean) or saturation (per pixel a = r, b = (1 - r) * max, see _saturation)
    by the image's op for the slot, then keeps hue's or the linear op's result, so the
    per-pixel cost does not depend on the order."""
    bright, contrast = jitter.brightness, jitter.contrast
    original = planes
    for slot in range(4):
        op = jitter.order[:, slot]
        top, bottom = _max_min(planes)
        ratio = _saturation_ratio(jitter.saturation, top, bottom)
        is_saturation = _per_image(op == SATURATION)
        image_scale = tf.where(op == CONTRAST, contrast, 1.0 if additive else bright)
        scale = tf.where(is_saturation, ratio, _per_image(image_scale))
        toward_top = (1.0 - ratio) * top
        rotated = _hue(planes, jitter.hue, top, bottom)
        is_hue = _per_image(op == HUE)
        out = []
        for c, plane in enumerate(planes):
            mean = tf.reduce_mean(plane, axis=[1, 2])
            offset = tf.where(op == CONTRAST, (1.0 - contrast) * mean, bright if additive else 0.0)
            offset = tf.where(is_saturation, toward_top, _per_image(offset))
            value = tf.where(is_hue, rotated[c], scale * plane + offset)
            out.append(tf.clip_by_value(value, 0.0, 1.0))
        planes = materialize(out, barrier)  # each slot reads its input many times
    keep = _per_image(jitter.apply)
    return [tf.where(keep, j, o) for j, o in zip(planes, original, strict=True)]


def _grey(planes: list) -> tf.Tensor:
    return LUMA[0] * planes[0] + LUMA[1] * planes[1] + LUMA[2] * planes[2]


def grayscale(planes: list, draws: tf.Tensor, policy: AugmentPolicy) -> list:
    gray_images = _per_image(draws[:, GRAY_COL] < policy.grayscale_prob)
    grey = _grey(planes)
    return [tf.where(gray_images, grey, c) for c in planes]


# ------------------------------------------------------------------------------ blur
