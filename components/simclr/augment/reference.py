"""The per-image reference: the same policy written like google-research/simclr's
data_util.py for a `tf.data` map, with TensorFlow's own per-image ops; the batched ops
are checked against it (tests) and measured beside it (`make bench`)."""

from __future__ import annotations

import tensorflow as tf

from simclr.augment import rng
from simclr.augment.blur import blur_kernels, blur_radius
from simclr.augment.colour import Jitter, jitter_draw
from simclr.augment.policy import AugmentPolicy
from simclr.augment.rng import BLUR_COL, CROP_ATTEMPTS, FLIP_COL, GRAY_COL, MIN_OBJECT_COVERED


def augment_image(image: tf.Tensor, policy: AugmentPolicy, seed: int | tf.Tensor) -> tf.Tensor:
    """One view of one image (uint8 [H,W,3] -> float32 [H,W,3] in [0,1]), reference style.

    The same policy as `augment_batch`, written like the official data_util.py with
    TensorFlow's own per-image ops (sample_distorted_bounding_box, bicubic resize,
    adjust_brightness/contrast/saturation/hue, rgb_to_grayscale), tf.cond per transform;
    for a `tf.data` map. The same distribution as the batched version, other random
    numbers (the crop box comes from TensorFlow's stateless sampler).
    """
    key = rng.seed_key(seed)
    u = rng.draws(key, 1)[0]
    image = tf.convert_to_tensor(image)
    height, width = image.shape[0], image.shape[1]
    x = tf.image.convert_image_dtype(image, tf.float32)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(x),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        seed=tf.stack([tf.bitcast(key, tf.int32), tf.bitcast(rng.fold(key, 3), tf.int32)]),
        min_object_covered=MIN_OBJECT_COVERED,
        aspect_ratio_range=(policy.crop_aspect_min, policy.crop_aspect_max),
        area_range=(policy.crop_area_min, policy.crop_area_max),
        max_attempts=CROP_ATTEMPTS,
        use_image_if_no_bounding_boxes=True,
    )
    x = tf.image.resize(tf.slice(x, begin, size)[None], [height, width], method="bicubic")[0]
    x = _maybe(u[FLIP_COL] < policy.flip_prob, tf.image.flip_left_right, x)
    if policy.color_jitter_prob > 0 and policy.color_jitter_strength > 0:
        jitter = jitter_draw(u[None], policy)
        x = _maybe(jitter.apply[0], lambda v: _jitter_image(v, jitter, policy), x)
    x = _maybe(u[GRAY_COL] < policy.grayscale_prob, _grey_image, x)
    if policy.blur:
        sigma = rng.scale(u[BLUR_COL + 1], policy.blur_sigma_min, policy.blur_sigma_max)
        x = _maybe(u[BLUR_COL] < policy.blur_prob, lambda v: _blur_image(v, sigma, policy), x)
    return tf.clip_by_value(x, 0.0, 1.0)


def _maybe(apply: tf.Tensor, fn, x: tf.Tensor) -> tf.Tensor:
    return tf.cond(apply, lambda: fn(x), lambda: x)


def _grey_image(x: tf.Tensor) -> tf.Tensor:
    return tf.tile(tf.image.rgb_to_grayscale(x), [1, 1, 3])


def _jitter_image(x: tf.Tensor, jitter: Jitter, policy: AugmentPolicy) -> tf.Tensor:
    """The official color_jitter_rand: tf.image ops in the image's order, each clipped;
    `jitter`: one image's."""
    bright, contrast, saturation, hue = (
        amount[0] for amount in (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)
    )
    order = jitter.order[0]
    ops = [
        (lambda v: tf.image.adjust_brightness(v, bright))
        if policy.color_jitter_version == "v1"
        else (lambda v: v * bright),
        lambda v: tf.image.adjust_contrast(v, contrast),
        lambda v: tf.image.adjust_saturation(v, saturation),
        lambda v: tf.image.adjust_hue(v, hue),
    ]
    for slot in range(4):
        branches = [lambda f=f, v=x: f(v) for f in ops]
        x = tf.clip_by_value(tf.switch_case(order[slot], branches), 0.0, 1.0)
    return x


def _blur_image(x: tf.Tensor, sigma: tf.Tensor, policy: AugmentPolicy) -> tf.Tensor:
    radius = min(blur_radius(x.shape[0], policy), blur_radius(x.shape[1], policy))
    if radius == 0:
        return x
    kernel = blur_kernels(sigma[None], radius)[0]
    size = 2 * radius + 1
    horizontal = tf.tile(tf.reshape(kernel, [1, size, 1, 1]), [1, 1, 3, 1])
    vertical = tf.tile(tf.reshape(kernel, [size, 1, 1, 1]), [1, 1, 3, 1])
    out = tf.nn.depthwise_conv2d(x[None], horizontal, [1, 1, 1, 1], "SAME")
    return tf.nn.depthwise_conv2d(out, vertical, [1, 1, 1, 1], "SAME")[0]
