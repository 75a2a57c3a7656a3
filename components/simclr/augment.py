"""SimCLR data augmentation: the policy, a batched XLA-friendly version, a per-image one.

The policy is SimCLR's (Chen et al. 2020, arXiv 2002.05709, appendix A and B.9 for
CIFAR-10) as google-research/simclr's v1 code implements it, the code behind the paper's
CIFAR-10 figure (94.0%). Each batched op equals TensorFlow's own per-image op that the
official code calls (tests/test_augment.py checks them against TensorFlow, not against
our reading of it):

- Random resized crop: boxes distributed as `tf.image.sample_distorted_bounding_box`
  (whole pixels, min_object_covered 0.1, area 0.08-1, aspect 3/4-4/3 uniform, 100
  attempts, the whole image if all fail: `_crop_boxes` follows the kernel's algorithm),
  resized as `tf.image.resize(method="bicubic")` (`_bicubic_taps`), then flipped.
- Colour jitter (probability 0.8, strength s, the four ops in a random order, each
  followed by a clip to [0, 1]): brightness `tf.image.adjust_brightness` with a delta in
  +-0.8s (v1; `color_jitter_version="v2"` multiplies by a factor in [1-0.8s, 1+0.8s] as
  the tf2 code), `adjust_contrast` (per-channel means), `adjust_saturation` (HSV) and
  `adjust_hue` (HSV), with factors in [1-0.8s, 1+0.8s] and a hue delta in +-0.2s.
- Grayscale (probability 0.2): `tf.image.rgb_to_grayscale`'s weights.
- Gaussian blur (off for CIFAR-10, per the paper): separable, zero-padded ("SAME").

Batched version (`augment_pair` / `augment_batch`): vectorised over the batch, stateless
randomness, compiles under XLA. Each image's randomness depends only on the seed and its
position in the batch (`augment_batch(x[:k], p, s)` equals `augment_batch(x, p, s)[:k]` up to
float rounding).
- Crop + resize + flip is separable bicubic resampling: two batched matrix products with
  per-image 4-tap resampling matrices (the flip is folded into the column matrix, the
  1/255 into the row matrix).
- The colour ops run on the three channel planes [B,H,W] (vectorises well on CPU), with
  per-image amounts; saturation and hue in closed form (no HSV round trip: v + r(x - v)
  for saturation, the max/min-preserving hue turn for hue). Each jitter slot computes
  the four ops and keeps each image's own, so the per-pixel cost does not depend on the
  order; a fusion barrier between slots keeps XLA from recomputing the previous slot.

Per-image version (`augment_image`): the same policy written like the official code for
a `tf.data` map, with TensorFlow's per-image ops; used for comparison and the benchmark.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from simclr.errors import UserError
from simclr.knobs import knob


class _LazyTensorFlow:
    """`tf`, imported on first use: policy handling (the augment task's flag checks, the
    KFP adapters) then needs no TensorFlow, and bad flags fail fast with one line."""

    def __getattr__(self, name: str) -> Any:
        import tensorflow

        return getattr(tensorflow, name)


tf = _LazyTensorFlow()

# Grey level weights of tf.image.rgb_to_grayscale (the official code's to_grayscale).
LUMA = (0.2989, 0.5870, 0.1140)
JITTER_VERSIONS = ("v1", "v2")  # brightness additive (v1) or multiplicative (v2)
# tf.image.sample_distorted_bounding_box as the official code calls it.
_CROP_ATTEMPTS = 100
_MIN_OBJECT_COVERED = 0.1
# TensorFlow's ResizeBicubic: Keys' cubic (a = -0.5), positions quantised to 1/1024.
_KEYS_A = -0.5
_CUBIC_TABLE_SIZE = 1024.0
PROBABILITIES = ("flip_prob", "color_jitter_prob", "grayscale_prob", "blur_prob")
# Each view draws one table of uniforms [B, _NUM_DRAWS]; every transform owns fixed
# columns, so turning one transform on or off leaves the others' randomness unchanged.
_CROP_COLS = (0, 4 * _CROP_ATTEMPTS)  # [aspect, height, y, x] per attempt
_FLIP_COL = _CROP_COLS[1]
_JITTER_COL = _FLIP_COL + 1  # apply, brightness, contrast, saturation, hue, 4 order keys
_GRAY_COL = _JITTER_COL + 9
_BLUR_COL = _GRAY_COL + 1  # apply, sigma
_NUM_DRAWS = _BLUR_COL + 2


class PolicyError(UserError):
    """An invalid policy value; `field` is the offending AugmentPolicy field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclasses.dataclass
class AugmentPolicy:
    """An augmentation policy; the defaults are SimCLR's CIFAR-10 policy."""

    crop_area_min: float = knob(0.08, "Random resized crop: smallest area fraction.")
    crop_area_max: float = knob(1.0, "Random resized crop: largest area fraction.")
    crop_aspect_min: float = knob(3.0 / 4.0, "Random resized crop: smallest aspect ratio w/h.")
    crop_aspect_max: float = knob(4.0 / 3.0, "Random resized crop: largest aspect ratio w/h.")
    flip_prob: float = knob(0.5, "Horizontal flip probability.")
    color_jitter_strength: float = knob(
        0.5, "Colour jitter strength s: brightness, contrast, saturation 0.8s, hue 0.2s."
    )
    color_jitter_prob: float = knob(0.8, "Colour jitter probability.")
    color_jitter_random_order: bool = knob(True, "Apply the four jitter ops in a random order.")
    # Contrast, saturation, hue: tf.image's.
    color_jitter_version: str = knob(
        "v1",
        "v1: additive brightness, as the code behind SimCLR's CIFAR-10 94.0%; v2: "
        "multiplicative brightness, as SimCLR v2's code (google-research/simclr tf2).",
    )
    grayscale_prob: float = knob(0.2, "Grayscale probability.")
    blur: bool = knob(False, "Gaussian blur on/off (off, as SimCLR on CIFAR-10).")
    blur_prob: float = knob(0.5, "Gaussian blur probability when --blur.")
    blur_sigma_min: float = knob(0.1, "Gaussian blur: smallest sigma in pixels.")
    blur_sigma_max: float = knob(2.0, "Gaussian blur: largest sigma in pixels.")
    blur_kernel_fraction: float = knob(0.1, "Gaussian blur kernel size as a fraction of the side.")

    @property
    def brightness(self) -> float:
        return 0.8 * self.color_jitter_strength

    @property
    def contrast(self) -> float:
        return 0.8 * self.color_jitter_strength

    @property
    def saturation(self) -> float:
        return 0.8 * self.color_jitter_strength

    @property
    def hue(self) -> float:
        return 0.2 * self.color_jitter_strength

    def validate(self) -> AugmentPolicy:
        """Raises UserError naming the first invalid field; returns self."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type in ("bool", bool):
                _check(
                    isinstance(value, (bool, np.bool_)), field.name, value, "must be true or false"
                )
            elif field.type in ("str", str):
                _check(isinstance(value, str), field.name, value, "must be a string")
            else:
                number = isinstance(value, (int, float)) and not isinstance(value, (bool, np.bool_))
                _check(number, field.name, value, "must be a number")
                _check(math.isfinite(value), field.name, value, "must be finite")
        rules = [
            (0.0 < self.crop_area_min <= 1.0, "crop_area_min", "must be in (0, 1]"),
            (0.0 < self.crop_area_max <= 1.0, "crop_area_max", "must be in (0, 1]"),
            (self.crop_area_min <= self.crop_area_max, "crop_area_min", "must be <= crop_area_max"),
            (self.crop_aspect_min > 0.0, "crop_aspect_min", "must be > 0"),
            (self.crop_aspect_max > 0.0, "crop_aspect_max", "must be > 0"),
            (
                self.crop_aspect_min <= self.crop_aspect_max,
                "crop_aspect_min",
                "must be <= crop_aspect_max",
            ),
            # 0.2*s is the hue shift; past half the colour wheel it wraps around.
            (
                0.0 <= self.color_jitter_strength <= 2.5,
                "color_jitter_strength",
                "must be in [0, 2.5]",
            ),
            (
                self.color_jitter_version in JITTER_VERSIONS,
                "color_jitter_version",
                f"must be one of {', '.join(JITTER_VERSIONS)}",
            ),
            (self.blur_sigma_min > 0.0, "blur_sigma_min", "must be > 0"),
            (
                self.blur_sigma_min <= self.blur_sigma_max,
                "blur_sigma_min",
                "must be <= blur_sigma_max",
            ),
            (0.0 < self.blur_kernel_fraction <= 1.0, "blur_kernel_fraction", "must be in (0, 1]"),
        ]
        rules += [
            (0.0 <= getattr(self, name) <= 1.0, name, "must be in [0, 1]") for name in PROBABILITIES
        ]
        for ok, name, rule in rules:
            _check(ok, name, getattr(self, name), rule)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentPolicy:
        """Builds and validates a policy; missing fields take the defaults."""
        if not isinstance(data, dict):
            raise UserError(f"policy must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise PolicyError(unknown[0], f"unknown policy field(s): {', '.join(unknown)}")
        return cls(**data).validate()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> AugmentPolicy:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"policy is not valid JSON: {err}") from None
        return cls.from_dict(data)


def _check(ok: bool, name: str, value: Any, rule: str) -> None:
    if not ok:
        raise PolicyError(name, f"policy field {name} {rule}, got {value!r}")


CIFAR_POLICY_MAX_SIZE = 32  # at or below: the CIFAR-10 policy; above: the ImageNet preset


def default_policy(image_size: int) -> AugmentPolicy:
    """The policy used when none is given: SimCLR's CIFAR-10 policy (the defaults) at
    <= 32 px, else the paper's ImageNet recipe (arXiv 2002.05709, appendix A; the
    official code's defaults): colour strength 1.0, Gaussian blur on (probability 0.5,
    sigma 0.1-2.0, kernel 10% of the side)."""
    if int(image_size) <= CIFAR_POLICY_MAX_SIZE:
        return AugmentPolicy()
    return AugmentPolicy(color_jitter_strength=1.0, blur=True, blur_kernel_fraction=0.1)


def without_crop(policy: AugmentPolicy) -> AugmentPolicy:
    """`policy` for views whose crop and flip were already taken (`augment_windows`):
    the whole-image box (a same-size bicubic resize is the identity) and no flip."""
    return dataclasses.replace(
        policy,
        crop_area_min=1.0,
        crop_area_max=1.0,
        crop_aspect_min=1.0,
        crop_aspect_max=1.0,
        flip_prob=0.0,
    )


def load_policy(uri: str) -> AugmentPolicy:
    """Reads a policy JSON file (local or gs://)."""
    from simclr import storage  # imported here: the training step needs no storage client

    if not storage.exists(uri):
        raise UserError(f"policy file not found: {uri}")
    try:
        text = storage.read_bytes(uri).decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{uri}: not a UTF-8 JSON policy file (byte {err.start})") from None
    try:
        return AugmentPolicy.from_json(text)
    except UserError as err:
        raise UserError(f"{uri}: {err}") from None


def save_policy(policy: AugmentPolicy, uri: str) -> None:
    """Writes the policy as JSON (local or gs://)."""
    from simclr import storage

    storage.write_text(uri, policy.validate().to_json())


# ----------------------------------------------------------------------------- seeds


# TF's stateless Philox ops give different numbers under XLA than in TF kernels (checked:
# tf.random.stateless_uniform in and out of jit_compile), so views would change with the
# compilation mode. Instead: a counter-based hash (Wellons' "lowbias32" mixer) of plain
# uint32 integer ops, bit-identical in eager, tf.function and XLA on any device.
_MASK32 = 0xFFFFFFFF


def _mix(x: tf.Tensor) -> tf.Tensor:
    """lowbias32: a bijective avalanche mixer on uint32."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))
    x = x * tf.constant(0x7FEB352D, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(15, tf.uint32)))
    x = x * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))


def _seed_key(seed: int | tf.Tensor) -> tf.Tensor:
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
        key = _mix(tf.bitwise.bitwise_xor(_mix(key + high), low))
    return key


def _fold(key: tf.Tensor, data: int) -> tf.Tensor:
    """A new key derived from `key` and a small integer (one per transform / view)."""
    return _mix(
        tf.bitwise.bitwise_xor(key, _mix(tf.constant(data * 0x9E3779B9 & _MASK32, tf.uint32)))
    )


def _uniform(key: tf.Tensor, shape: list, minval: float = 0.0, maxval: float = 1.0) -> tf.Tensor:
    """Uniform float32 in [minval, maxval); element [i, ...] depends only on key and i."""
    count = tf.reduce_prod(tf.stack(shape)) if shape else 1
    counter = tf.cast(tf.reshape(tf.range(count), shape), tf.uint32)
    bits = _mix(tf.bitwise.bitwise_xor(_mix(counter), key) + tf.constant(0x9E3779B9, tf.uint32))
    unit = tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32)), tf.float32) * 2.0**-24
    return minval + (maxval - minval) * unit


# ------------------------------------------------------------------------------ crop


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
    boxes = _crop_boxes(_draws(_seed_key(seed), batch_size), policy, height, width)
    return tuple(tf.cast(b, tf.int32) for b in boxes)


def _draws(key: tf.Tensor, batch_size: int | tf.Tensor) -> tf.Tensor:
    """The view's table of uniforms in [0, 1): [B, _NUM_DRAWS]."""
    return _uniform(key, [batch_size, _NUM_DRAWS])


def _crop_boxes(draws: tf.Tensor, policy: AugmentPolicy, height: int, width: int):
    """(y, x, h, w) float32 [B] (whole numbers) following TensorFlow's
    SampleDistortedBoundingBox kernel (core/kernels/image/sample_distorted_bounding_box_op.cc):
    per attempt an aspect ratio uniform in its range, a height uniform over the whole
    numbers that keep the area in range (width = round(height * aspect)), a position
    uniform over [0, H - h) x [0, W - w); the first attempt that fits and covers at least
    _MIN_OBJECT_COVERED of the image wins, else the whole image. Rounding is
    round-half-even in float32, as lrintf; the kernel's random draws become four
    uniforms per attempt (independent either way)."""
    u = tf.reshape(draws[:, _CROP_COLS[0] : _CROP_COLS[1]], [-1, _CROP_ATTEMPTS, 4])
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
    fits &= (w > 0) & (h > 0) & (area >= 1.0) & (area / full >= _MIN_OBJECT_COVERED)
    y = tf.floor(u[..., 2] * (height - h))  # uniform over [0, H - h): H - h itself never
    x = tf.floor(u[..., 3] * (width - w))
    # The first attempt that fits; the whole image if none does.
    pick = tf.one_hot(tf.argmax(tf.cast(fits, tf.int32), axis=1), _CROP_ATTEMPTS)
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


def _crop_flip_resize(images: tf.Tensor, draws: tf.Tensor, policy: AugmentPolicy) -> tf.Tensor:
    if _whole_square_unflipped(images, policy):
        # The box is the whole (square) image and the bicubic taps at scale 1 are
        # (0, 1, 0, 0): the resampling is the identity, so skip its matrix products.
        return tf.cast(images, tf.float32) * (1.0 / 255.0)
    boxes = _crop_boxes(draws, policy, images.shape[1], images.shape[2])
    return crop_resize(images, boxes, draws[:, _FLIP_COL] < policy.flip_prob)


def _whole_square_unflipped(images: tf.Tensor, policy: AugmentPolicy) -> bool:
    return (
        images.shape[1] == images.shape[2]
        and policy.crop_area_min == 1.0
        and policy.crop_aspect_min == 1.0
        and policy.crop_aspect_max == 1.0
        and policy.flip_prob == 0.0
    )


# --------------------------------------------------------------------- colour jitter
#
# Jitter op numbers in the random order (the official code's order when not random).
_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = range(4)

# Each op works on the image as three channel planes [B,H,W] (vectorises well on CPU)
# with per-image parameters [B], and equals the tf.image op of the official code applied
# image by image (tests/test_augment.py checks each to 1e-4 under XLA).


def _per_image(value: tf.Tensor) -> tf.Tensor:
    return value[:, None, None]


def _brightness_add(planes: list, delta: tf.Tensor) -> list:
    """tf.image.adjust_brightness: x + delta (v1's random_brightness)."""
    return [c + _per_image(delta) for c in planes]


def _brightness_scale(planes: list, factor: tf.Tensor) -> list:
    """x * factor (google-research/simclr v2's brightness)."""
    return [c * _per_image(factor) for c in planes]


def _contrast(planes: list, factor: tf.Tensor) -> list:
    """tf.image.adjust_contrast: (x - mean) * factor + mean, mean per image and channel."""
    out = []
    for c in planes:
        mean = tf.reduce_mean(c, axis=[1, 2], keepdims=True)
        out.append((c - mean) * _per_image(factor) + mean)
    return out


def _saturation(planes: list, factor: tf.Tensor, top: tf.Tensor, bottom: tf.Tensor) -> list:
    """tf.image.adjust_saturation (HSV: s = clip(s * factor, 0, 1), h and v kept), in
    closed form: with v = max, s = (v - min) / v, each channel is v - s * v * k(h), so the
    new image is v + r * (x - v), r from _saturation_ratio."""
    ratio = _saturation_ratio(factor, top, bottom)
    return [top + ratio * (c - top) for c in planes]


def _saturation_ratio(factor: tf.Tensor, top: tf.Tensor, bottom: tf.Tensor) -> tf.Tensor:
    """Per pixel r = min(factor, v / (v - min)) (s * factor clipped at 1); pixels with
    v <= 0 have s = 0 in TensorFlow's conversion and become grey at v (r = 0)."""
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


def adjust_colour(images: tf.Tensor, op: str, amounts: tf.Tensor) -> tf.Tensor:
    """One jitter op with per-image amounts [B] on float32 [B,H,W,3] (unclipped):
    op "brightness" (additive), "brightness_scale", "contrast", "saturation" or "hue"."""
    planes = [images[..., c] for c in range(3)]
    if op in ("saturation", "hue"):
        top, bottom = _max_min(planes)
        planes = (_saturation if op == "saturation" else _hue)(planes, amounts, top, bottom)
    else:
        fn = {"brightness": _brightness_add, "brightness_scale": _brightness_scale}
        planes = fn.get(op, _contrast)(planes, amounts)
    return tf.stack(planes, axis=-1)


def _jitter_amounts(draws: tf.Tensor, policy: AugmentPolicy):
    """(apply [B], brightness, contrast, saturation, hue amounts [B], order [B,4])."""
    u = draws[:, _JITTER_COL : _JITTER_COL + 9]
    apply = u[:, 0] < policy.color_jitter_prob
    if policy.color_jitter_version == "v1":
        bright = _scale(u[:, 1], -policy.brightness, policy.brightness)  # random_brightness
    else:
        bright = _scale(u[:, 1], max(0.0, 1.0 - policy.brightness), 1.0 + policy.brightness)
    contrast = _scale(u[:, 2], max(0.0, 1.0 - policy.contrast), 1.0 + policy.contrast)
    saturation = _scale(u[:, 3], max(0.0, 1.0 - policy.saturation), 1.0 + policy.saturation)
    hue = _scale(u[:, 4], -policy.hue, policy.hue)
    if policy.color_jitter_random_order:
        order = tf.argsort(u[:, 5:9], axis=1)
    else:
        order = tf.broadcast_to(tf.range(4), tf.shape(u[:, 5:9]))
    return apply, bright, contrast, saturation, hue, order


def _scale(u: tf.Tensor, lo: float, hi: float) -> tf.Tensor:
    return lo + (hi - lo) * u


def _color_jitter(planes: list, draws: tf.Tensor, policy: AugmentPolicy) -> list:
    """Colour jitter as the official `color_jitter_rand`: the four ops in a random order
    per image, each followed by a clip to [0, 1]; images not jittered keep theirs.

    Every slot computes hue and one "linear" op per image, a * x + b, that is brightness
    (a = 1 and b = delta, or a = factor), contrast (a = factor, b = (1 - factor) * the
    channel's mean) or saturation (per pixel a = r, b = (1 - r) * max, see _saturation)
    by the image's op for the slot, then keeps hue's or the linear op's result."""
    apply, bright, contrast, saturation, hue, order = _jitter_amounts(draws, policy)
    additive = policy.color_jitter_version == "v1"
    original = planes
    for slot in range(4):
        op = order[:, slot]
        top, bottom = _max_min(planes)
        ratio = _saturation_ratio(saturation, top, bottom)
        is_saturation = _per_image(op == _SATURATION)
        image_scale = tf.where(op == _CONTRAST, contrast, 1.0 if additive else bright)
        scale = tf.where(is_saturation, ratio, _per_image(image_scale))
        toward_top = (1.0 - ratio) * top
        rotated = _hue(planes, hue, top, bottom)
        is_hue = _per_image(op == _HUE)
        out = []
        for c, plane in enumerate(planes):
            mean = tf.reduce_mean(plane, axis=[1, 2])
            offset = tf.where(op == _CONTRAST, (1.0 - contrast) * mean, bright if additive else 0.0)
            offset = tf.where(is_saturation, toward_top, _per_image(offset))
            value = tf.where(is_hue, rotated[c], scale * plane + offset)
            out.append(tf.clip_by_value(value, 0.0, 1.0))
        planes = _materialize(out, draws)  # each slot reads its input many times
    keep = _per_image(apply)
    return [tf.where(keep, j, o) for j, o in zip(planes, original, strict=True)]


def _grey(planes: list) -> tf.Tensor:
    return LUMA[0] * planes[0] + LUMA[1] * planes[1] + LUMA[2] * planes[2]


def _grayscale(planes: list, draws: tf.Tensor, policy: AugmentPolicy) -> list:
    gray_images = _per_image(draws[:, _GRAY_COL] < policy.grayscale_prob)
    grey = _grey(planes)
    return [tf.where(gray_images, grey, c) for c in planes]


# ------------------------------------------------------------------------------ blur


def blur_radius(side: int, policy: AugmentPolicy) -> int:
    """Kernel radius for a side of `side` pixels: kernel 2r+1 with r = int(side*f)//2."""
    return int(side * policy.blur_kernel_fraction) // 2


def _blur_kernels(sigma: tf.Tensor, radius: int) -> tf.Tensor:
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


def _blur(x: tf.Tensor, draws: tf.Tensor, policy: AugmentPolicy) -> tf.Tensor:
    radius = min(blur_radius(x.shape[1], policy), blur_radius(x.shape[2], policy))
    if radius == 0:
        return x
    apply = draws[:, _BLUR_COL] < policy.blur_prob
    sigma = _scale(draws[:, _BLUR_COL + 1], policy.blur_sigma_min, policy.blur_sigma_max)
    delta = tf.one_hot(radius, 2 * radius + 1, dtype=tf.float32)  # identity kernel
    kernels = tf.where(apply[:, None], _blur_kernels(sigma, radius), delta)
    return _conv_axis(_conv_axis(x, kernels, 1), kernels, 2)


# --------------------------------------------------------------------------- batched


def augment_batch(images: tf.Tensor, policy: AugmentPolicy, seed: int | tf.Tensor) -> tf.Tensor:
    """One augmented view of each image: uint8 [B,H,W,3] -> float32 [B,H,W,3] in [0,1]."""
    images = tf.convert_to_tensor(images)
    _check_images(images)
    return _augment_batch(images, policy, _seed_key(seed))


def _check_images(images: tf.Tensor) -> None:
    if images.dtype != tf.uint8 or images.shape.rank != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [B,H,W,3], got {images.dtype} {images.shape}")
    if images.shape[1] is None or images.shape[2] is None:
        raise ValueError("images must have a static height and width")


def _augment_batch(images: tf.Tensor, policy: AugmentPolicy, key: tf.Tensor) -> tf.Tensor:
    return _augment(images, _draws(key, tf.shape(images)[0]), policy)


def _augment(images: tf.Tensor, draws: tf.Tensor, policy: AugmentPolicy) -> tf.Tensor:
    """The views of `images` for a table of draws [B, _NUM_DRAWS]."""
    return _after_crop(_materialize(_crop_flip_resize(images, draws, policy), draws), draws, policy)


def _after_crop(x: tf.Tensor, draws: tf.Tensor, policy: AugmentPolicy) -> tf.Tensor:
    """Colour jitter, grayscale and blur of cropped views float32 [B,H,W,3], clipped."""
    jitter = policy.color_jitter_prob > 0 and policy.color_jitter_strength > 0
    if jitter or policy.grayscale_prob > 0:
        planes = [x[..., c] for c in range(3)]
        if jitter:
            planes = _color_jitter(planes, draws, policy)
        if policy.grayscale_prob > 0:
            planes = _grayscale(planes, draws, policy)
        x = tf.stack(planes, axis=-1)
    if policy.blur and policy.blur_prob > 0:
        x = _blur(x, draws, policy)
    return tf.clip_by_value(x, 0.0, 1.0)


def _materialize(x: Any, draws: tf.Tensor) -> Any:
    """`x`, computed once: a fusion barrier for XLA.

    Without it XLA fuses the crop's gathers into every consumer: each colour plane of
    each jitter slot reads all three planes of the slot before, so the gathers ran
    dozens of times (the whole view ~35x slower on CPU). A conditional is never fused
    into, so its operand is computed into a buffer once. The predicate depends on
    the data (draws are in [0, 1)) so that XLA cannot fold it away; it is always true.
    """
    zeros = lambda: tf.nest.map_structure(tf.zeros_like, x)  # noqa: E731
    return tf.cond(tf.reduce_min(draws) >= 0.0, lambda: x, zeros)


def augment_pair(
    images: tf.Tensor, policy: AugmentPolicy, seed: int | tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Two independent views of each image (float32 [B,H,W,3] in [0,1])."""
    images = tf.convert_to_tensor(images)
    _check_images(images)
    key = _seed_key(seed)
    # Two batches of B rather than one of 2B: measured ~15% faster on CPU (cache).
    return _augment_batch(images, policy, _fold(key, 1)), _augment_batch(
        images, policy, _fold(key, 2)
    )


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
    key = _seed_key(seed)

    def view(k: int) -> tf.Tensor:
        canvas = tf.convert_to_tensor(crops[k])
        _check_images(canvas)
        draws = _draws(_fold(key, k + 1), tf.shape(canvas)[0])
        zero = tf.zeros_like(sizes[:, k, 0])
        boxes = (zero, zero, sizes[:, k, 0], sizes[:, k, 1])
        x = crop_resize(canvas, boxes, flips[:, k], size=size)
        return _after_crop(_materialize(x, draws), draws, rest)

    return view(0), view(1)


# ------------------------------------------------------------------------- per image


def augment_image(image: tf.Tensor, policy: AugmentPolicy, seed: int | tf.Tensor) -> tf.Tensor:
    """One view of one image (uint8 [H,W,3] -> float32 [H,W,3] in [0,1]), reference style.

    The same policy as `augment_batch`, written like the official data_util.py with
    TensorFlow's own per-image ops (sample_distorted_bounding_box, bicubic resize,
    adjust_brightness/contrast/saturation/hue, rgb_to_grayscale), tf.cond per transform;
    for a `tf.data` map. The same distribution as the batched version, other random
    numbers (the crop box comes from TensorFlow's stateless sampler).
    """
    key = _seed_key(seed)
    u = _draws(key, 1)[0]
    image = tf.convert_to_tensor(image)
    height, width = image.shape[0], image.shape[1]
    x = tf.image.convert_image_dtype(image, tf.float32)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(x),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        seed=tf.stack([tf.bitcast(key, tf.int32), tf.bitcast(_fold(key, 3), tf.int32)]),
        min_object_covered=_MIN_OBJECT_COVERED,
        aspect_ratio_range=(policy.crop_aspect_min, policy.crop_aspect_max),
        area_range=(policy.crop_area_min, policy.crop_area_max),
        max_attempts=_CROP_ATTEMPTS,
        use_image_if_no_bounding_boxes=True,
    )
    x = tf.image.resize(tf.slice(x, begin, size)[None], [height, width], method="bicubic")[0]
    x = _maybe(u[_FLIP_COL] < policy.flip_prob, tf.image.flip_left_right, x)
    if policy.color_jitter_prob > 0 and policy.color_jitter_strength > 0:
        amounts = [a[0] for a in _jitter_amounts(u[None], policy)]
        x = _maybe(amounts[0], lambda v: _jitter_image(v, amounts[1:], policy), x)
    x = _maybe(u[_GRAY_COL] < policy.grayscale_prob, _grey_image, x)
    if policy.blur:
        sigma = _scale(u[_BLUR_COL + 1], policy.blur_sigma_min, policy.blur_sigma_max)
        x = _maybe(u[_BLUR_COL] < policy.blur_prob, lambda v: _blur_image(v, sigma, policy), x)
    return tf.clip_by_value(x, 0.0, 1.0)


def _maybe(apply: tf.Tensor, fn, x: tf.Tensor) -> tf.Tensor:
    return tf.cond(apply, lambda: fn(x), lambda: x)


def _grey_image(x: tf.Tensor) -> tf.Tensor:
    return tf.tile(tf.image.rgb_to_grayscale(x), [1, 1, 3])


def _jitter_image(x: tf.Tensor, amounts: list, policy: AugmentPolicy) -> tf.Tensor:
    """The official color_jitter_rand: tf.image ops in the image's order, each clipped."""
    bright, contrast, saturation, hue, order = amounts
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
    kernel = _blur_kernels(sigma[None], radius)[0]
    size = 2 * radius + 1
    horizontal = tf.tile(tf.reshape(kernel, [1, size, 1, 1]), [1, 1, 3, 1])
    vertical = tf.tile(tf.reshape(kernel, [size, 1, 1, 1]), [1, 1, 3, 1])
    out = tf.nn.depthwise_conv2d(x[None], horizontal, [1, 1, 1, 1], "SAME")
    return tf.nn.depthwise_conv2d(out, vertical, [1, 1, 1, 1], "SAME")[0]
