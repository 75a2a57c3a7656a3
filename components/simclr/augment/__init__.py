"""SimCLR data augmentation: the policy, a batched XLA-friendly version, a per-image one.

Modules, one concern each (TensorFlow-free: `policy` and this package's own namespace):
`policy` (the fields, rules, presets and JSON file), `rng` (the stateless hash and the
draw table), `crop`, `colour` and `blur` (the batched transforms), `ops` (the batched
views: `augment_pair`, `augment_batch`, `augment_windows`) and `reference` (the
per-image version, `augment_image`).

The policy is SimCLR's (Chen et al. 2020, arXiv 2002.05709, appendix A and B.9 for
CIFAR-10) as google-research/simclr's v1 code implements it, the code behind the paper's
CIFAR-10 figure (94.0%). Each batched op equals TensorFlow's own per-image op that the
official code calls (tests/test_augment.py checks them against TensorFlow, not against
our reading of it):

- Random resized crop: boxes distributed as `tf.image.sample_distorted_bounding_box`
  (whole pixels, min_object_covered 0.1, area 0.08-1, aspect 3/4-4/3 uniform, 100
  attempts, the whole image if all fail: `crop.crop_boxes` follows the kernel's algorithm),
  resized as `tf.image.resize(method="bicubic")` (`crop._bicubic_taps`), then flipped.
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

from simclr.augment.policy import (
    CIFAR_POLICY_MAX_SIZE,
    JITTER_VERSIONS,
    PROBABILITIES,
    AugmentPolicy,
    PolicyError,
    default_policy,
    load_policy,
    save_policy,
    without_crop,
)
from simclr.lazy import module_getattr

# The contract's `simclr.augment.augment_pair` (and its siblings) need TensorFlow: they
# resolve on first use (PEP 562), so that importing the policy loads none.
_TENSORFLOW_NAMES = {
    "augment_pair": "ops",
    "augment_batch": "ops",
    "augment_windows": "ops",
    "augment_image": "reference",
}

__all__ = [
    "CIFAR_POLICY_MAX_SIZE",
    "JITTER_VERSIONS",
    "PROBABILITIES",
    "AugmentPolicy",
    "PolicyError",
    "default_policy",
    "load_policy",
    "save_policy",
    "without_crop",
    *_TENSORFLOW_NAMES,
]


__getattr__ = module_getattr(__name__, _TENSORFLOW_NAMES)
