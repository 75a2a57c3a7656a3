"""The batched augmentation: the policy's views of a whole batch, vectorised, with
stateless randomness, compiling under XLA. Each image's randomness depends only on the
seed and its position in the batch (`augment_batch(x[:k], p, s)` equals
`augment_batch(x, p, s)[:k]` up to float rounding)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from simclr.augment import rng
from simclr.augment.barrier import materialize
from simclr.augment.blur import blur
from simclr.augment.colour import color_jitter, grayscale
from simclr.augment.crop import crop_flip_resize, crop_resize
from simclr.augment.policy import AugmentPolicy, without_crop


def augment_batch(images: tf.Tensor, policy: AugmentPolicy, seed: int | tf.Tensor) -> tf.Tensor:
    """One augmented view of each image: uint8 [B,H,W,3] -> float32 [B,H,W,3] in [0,1]."""
    images = tf.convert_to_tensor(images)
    check_images(images)
    return _views(images, policy, rng.seed_key(seed))


def check_images(images: tf.Tensor) -> None:
    if images.dtype != tf.uint8 or images.shape.rank != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [B,H,W,3], got {images.dtype} {images.shape}")
    if images.shape[1] is None or images.shape[2] is None:
        raise ValueError("images must have a static height and width")


def _views(images: tf.Tensor, policy: AugmentPolicy, key: tf.Tensor) -> tf.Tensor:
    return _augment(images, rng.draws(key, tf.shape(images)[0]), policy)


def _augment(images: tf.Tensor, draws: tf.Tensor, policy: AugmentPolicy) -> tf.Tensor:
    """The views of `images` for a table of draws [B, NUM_DRAWS]."""
    return _after_crop(materialize(crop_flip_resize(images, draws, policy), draws), draws, policy)


def _after_crop(x: tf.Tensor, draws: tf.Tensor, policy: AugmentPolicy) -> tf.Tensor:
    """Colour jitter, grayscale and blur of cropped views float32 [B,H,W,3], clipped."""
    jitter = policy.color_jitter_prob > 0 and policy.color_jitter_strength > 0
    if jitter or policy.grayscale_prob > 0:
        planes = [x[..., c] for c in range(3)]
        if jitter:
            planes = color_jitter(planes, draws, policy)
        if policy.grayscale_prob > 0:
            planes = grayscale(planes, draws, policy)
        x = tf.stack(planes, axis=-1)
    if policy.blur and policy.blur_prob > 0:
        x = blur(x, draws, policy)
    return tf.clip_by_value(x, 0.0, 1.0)


def augment_pair(
    images: tf.Tensor, policy: AugmentPolicy, seed: int | tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Two independent views of each image (float32 [B,H,W,3] in [0,1])."""
    images = tf.convert_to_tensor(images)
    check_images(images)
    key = rng.seed_key(seed)
    # Two batches of B rather than one of 2B: measured ~15% faster on CPU (cache).
    return _views(images, policy, rng.fold(key, 1)), _views(images, policy, rng.fold(key, 2))


def augment_windows(
    batch: dict[str, Any], policy: AugmentPolicy, seed: int | tf.Tensor, size: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """The two views of crops cut in tf.data (training on image datasets,
    `simclr.data.crop_windows`): `batch["crops"]` is a pair of uint8 [B, C, C, 3], crop k
    of image i in the top-left `batch["sizes"][i, k]` = (h, w) of its zero-padded
    canvas, drawn from the policy's crop distribution over the whole stored picture.
    Here each is resized bicubically to `size` (`crop_resize`), flipped where
    `batch["flips"][i, k]`, and given the rest of the policy (colour, grayscale, blur)
    as `augment_pair`, with its seed folding."""
    crops, sizes, flips = batch["crops"], batch["sizes"], batch["flips"]
    rest = without_crop(policy)
    key = rng.seed_key(seed)

    def view(k: int) -> tf.Tensor:
        canvas = tf.convert_to_tensor(crops[k])
        check_images(canvas)
        draws = rng.draws(rng.fold(key, k + 1), tf.shape(canvas)[0])
        zero = tf.zeros_like(sizes[:, k, 0])
        boxes = (zero, zero, sizes[:, k, 0], sizes[:, k, 1])
        x = crop_resize(canvas, boxes, flips[:, k], size=size)
        return _after_crop(materialize(x, draws), draws, rest)

    return view(0), view(1)
