"""The augmentation policy: its fields, rules, presets and JSON file (TensorFlow-free).

The augment task checks its flags and the KFP adapters handle policies without loading
TensorFlow; the ops that apply a policy live in `simclr.augment.ops`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from simclr import storage
from simclr.errors import UserError
from simclr.knobs import knob

JITTER_VERSIONS = ("v1", "v2")  # brightness additive (v1) or multiplicative (v2)
PROBABILITIES = ("flip_prob", "color_jitter_prob", "grayscale_prob", "blur_prob")


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
    storage.write_text(uri, policy.validate().to_json())
