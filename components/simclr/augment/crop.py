"""Random resized crop and flip, batched: the boxes of `tf.image.sample_distorted_bounding_box`
and the bicubic resize of `tf.image.resize`, as two matrix products per view."""

from __future__ import annotations

import tensorflow as tf

from simclr.augment import rng
from simclr.augment.policy import AugmentPolicy
from simclr.augment.rng import CROP_ATTEMPTS, CROP_COLS, FLIP_COL, MIN_OBJECT_COVERED

# TensorFlow's ResizeBicubic: Keys' cubic (a = -0.5), positions quantised to 1/1024.
_KEYS_A = -0.5
_CUBIC_TABLE_SIZE = 1024.0


def sample_crop_boxes(
    seed: int | tf.Tensor,
    batch_size: int | tf.Tensor,
    policy: AugmentPolicy,
    height: int = 32,
    width: int = 32,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Random resized crop boxes in whole pixels: (y, x, h, w), each int32 [B].

    The distribution of `tf.image.sample_distorted_bounding_box` with the whole image as
    the object box (as google-research/simclr's `distorted_bounding_box_crop`).
    """
    boxes = crop_boxes(rng.draws(rng.seed_key(seed), batch_size), policy, height, width)
    return tuple(tf.cast(b, tf.int32) for b in boxes)


def crop_boxes(draws: tf.Tensor, policy: AugmentPolicy, height: int, width: int):
    """(y, x, h, w) float32 [B] (whole numbers) following TensorFlow's
    SampleDistortedBoundingBox kernel (core/kernels/image/sample_distorted_bounding_box_op.cc):
    per attempt an aspect ratio uniform in its range, a height uniform over the whole
    numbers that keep the area in range (width = round(height * aspect)), a position
    uniform over [0, H - h) x [0, W - w); the first attempt that fits and covers at least
    MIN_OBJECT_COVERED of the image wins, else the whole image. Rounding is
    round-half-even in float32, as lrintf; the kernel's random draws become four
    uniforms per attempt (independent either way)."""
    u = tf.reshape(draws[:, CROP_COLS[0] : CROP_COLS[1]], [-1, CROP_ATTEMPTS, 4])
    full = float(height * width)
    min_area = tf.constant(policy.crop_area_min, tf.float32) * full
    max_area = tf.constant(policy.crop_area_max, tf.float32) * full
    aspect = u[..., 0] * (policy.crop_aspect_max - policy.crop_aspect_min) + policy.crop_aspect_min
    low = tf.round(tf.sqrt(min_area / aspect))
    high = tf.round(tf.sqrt(max_area / aspect))
    # The tallest box whose rounded width still fits (the kernel's kEps correction).
    fit = tf.floor((width + 0.5 - 1e-7) / aspect)
    fit = tf.where(tf.round(fit * aspect) > width, fit - 1.0, fit)
    high = tf.minimum(tf.where(tf.round(high * aspect) > width, fit, high), float(height))
    low = tf.minimum(low, high)
    h = low + tf.floor(u[..., 1] * (high - low + 1.0))
    w = tf.round(h * aspect)
    # The kernel's repairs of rounding: one pixel taller if too small, shorter if too big.
    grow = w * h < min_area
    h = tf.where(grow, h + 1.0, h)
    w = tf.where(grow, tf.round(h * aspect), w)
    shrink = w * h > max_area
    h = tf.where(shrink, h - 1.0, h)
    w = tf.where(shrink, tf.round(h * aspect), w)
    area = w * h
    fits = (area >= min_area) & (area <= max_area) & (w <= width) & (h <= height)
    fits &= (w > 0) & (h > 0) & (area >= 1.0) & (area / full >= MIN_OBJECT_COVERED)
    y = tf.floor(u[..., 2] * (height - h))  # uniform over [0, H - h): H - h itself never
    x = tf.floor(u[..., 3] * (width - w))
    # The first attempt that fits; the whole image if none does.
    pick = tf.one_hot(tf.argmax(tf.cast(fits, tf.int32), axis=1), CROP_ATTEMPTS)
    found = tf.reduce_any(fits, axis=1)

    def chosen(value: tf.Tensor, whole: float) -> tf.Tensor:
        return tf.where(found, tf.reduce_sum(pick * value, axis=1), whole)

    return chosen(y, 0.0), chosen(x, 0.0), chosen(h, float(height)), chosen(w, float(width))


def _bicubic_taps(start: tf.Tensor, size: tf.Tensor, n_out: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Source indices and weights [B, n_out, 4] resizing pixels [start, start + size)
    onto n_out, as TensorFlow's ResizeBicubic with half-pixel centres (what
    `tf.image.resize(method="bicubic")` runs): Keys' cubic with a = -0.5 and the
    fractional position rounded to 1/1024 (the kernel's coefficient table); taps outside
    the crop get weight 0 and the rest are renormalised."""
    scale = size[:, None] / n_out
    centre = (tf.range(n_out, dtype=tf.float32)[None, :] + 0.5) * scale - 0.5
    base = tf.floor(centre)
    t = tf.round((centre - base) * _CUBIC_TABLE_SIZE) / _CUBIC_TABLE_SIZE
    a = _KEYS_A
    near = lambda d: ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0  # noqa: E731  |d| <= 1
    far = lambda d: ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a  # noqa: E731  1 < |d| < 2
    weights = tf.stack([far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)], axis=-1)
    offsets = base[..., None] + tf.constant([-1.0, 0.0, 1.0, 2.0])
    inside = (offsets >= 0.0) & (offsets <= size[:, None, None] - 1.0)
    weights = tf.where(inside, weights, 0.0)
    weights /= tf.reduce_sum(weights, axis=-1, keepdims=True)
    index = start[:, None, None] + tf.clip_by_value(offsets, 0.0, size[:, None, None] - 1.0)
    return tf.cast(index, tf.int32), weights


def crop_resize(
    images: tf.Tensor,
    boxes: tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor],
    flip: tf.Tensor | None = None,
    size: int | None = None,
) -> tf.Tensor:
    """uint8 [B,H,W,3] -> float32 [B,S,S,3] (/255; S = `size`, else H x W): each image's
    box (y, x, h, w) in whole pixels resized bicubically, as `tf.image.resize(crop, [S,
    S], method="bicubic")` of `tf.image.convert_image_dtype(crop, tf.float32)`, then
    flipped left-right where `flip`. Not clipped (bicubic overshoots a little, as in
    the official pipeline, whose colour ops clip). Pixels outside the boxes are never
    read (weight 0), so a box may sit in a zero-padded canvas."""
    height, width = images.shape[1], images.shape[2]
    out_h, out_w = (size, size) if size is not None else (height, width)
    y, x, h, w = (tf.cast(b, tf.float32) for b in boxes)
    # Separable, as two batched matrix products with per-image resampling matrices
    # (4 taps per row; measured ~2.6x faster on CPU than gathering the taps).
    rows = _resampling_matrix(*_bicubic_taps(y, h, out_h), height) * (1.0 / 255.0)
    cols = _resampling_matrix(*_bicubic_taps(x, w, out_w), width)
    if flip is not None:
        cols = tf.where(flip[:, None, None], tf.reverse(cols, [1]), cols)
    out = tf.einsum("boh,bhwc->bowc", rows, tf.cast(images, tf.float32))
    return tf.einsum("bpw,bowc->bopc", cols, out)


def _resampling_matrix(index: tf.Tensor, weights: tf.Tensor, n_in: int) -> tf.Tensor:
    """[B, n_out, n_in] from the taps' source indices and weights [B, n_out, 4]."""
    return tf.reduce_sum(tf.one_hot(index, n_in) * weights[..., None], axis=2)


def crop_flip_resize(images: tf.Tensor, draws: tf.Tensor, policy: AugmentPolicy) -> tf.Tensor:
    if _whole_square_unflipped(images, policy):
        # The box is the whole (square) image and the bicubic taps at scale 1 are
        # (0, 1, 0, 0): the resampling is the identity, so skip its matrix products.
        return tf.cast(images, tf.float32) * (1.0 / 255.0)
    boxes = crop_boxes(draws, policy, images.shape[1], images.shape[2])
    return crop_resize(images, boxes, draws[:, FLIP_COL] < policy.flip_prob)


def _whole_square_unflipped(images: tf.Tensor, policy: AugmentPolicy) -> bool:
    return (
        images.shape[1] == images.shape[2]
        and policy.crop_area_min == 1.0
        and policy.crop_aspect_min == 1.0
        and policy.crop_aspect_max == 1.0
        and policy.flip_prob == 0.0
    )
