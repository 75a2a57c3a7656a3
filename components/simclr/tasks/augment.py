"""augment: fix the augmentation policy, preview it and measure its speed.

    python -m simclr.tasks.augment --data_dir=DIR --output_dir=DIR [--policy=FILE]
        [--crop_area_min=0.08] [--flip_prob=0.5] [--color_jitter_strength=0.5] [--blur] ...

The policy starts from SimCLR's CIFAR-10 defaults (or --policy=FILE, a policy.json) and
each policy flag given overrides its field. Files written to --output_dir (local or
gs://, atomically, metrics.json last):

- policy.json: the policy the pretraining uses (`simclr.augment.load_policy`).
- preview.png: one row per sample image, the original then augmented views, each
  upscaled 3x with nearest neighbour, white gutters.
- metrics.json: `images_per_second` (batched `augment_pair` under XLA, pairs of views
  per second on this machine after warm-up), `per_image_map_images_per_second` (the same
  policy as a per-image tf.data map), `speedup`, `batch_size`, `device`, ...
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from absl import flags

from simclr.errors import UserError
from simclr.tasks._app import dataclass_from_flags, define_dataclass_flags, run_task

POLICY_FILE = "policy.json"
PREVIEW_FILE = "preview.png"
METRICS_FILE = "metrics.json"
PREVIEW_SCALE = 3
GUTTER = 4


@dataclass
class AugmentConfig:
    data_dir: str
    output_dir: str
    policy: str | None = None
    # Policy fields (simclr.augment.AugmentPolicy); None keeps the --policy file's value
    # or the SimCLR CIFAR-10 default.
    crop_area_min: float | None = None
    crop_area_max: float | None = None
    crop_aspect_min: float | None = None
    crop_aspect_max: float | None = None
    flip_prob: float | None = None
    color_jitter_strength: float | None = None
    color_jitter_prob: float | None = None
    color_jitter_random_order: bool | None = None
    color_jitter_version: str | None = None
    grayscale_prob: float | None = None
    blur: bool | None = None
    blur_prob: float | None = None
    blur_sigma_min: float | None = None
    blur_sigma_max: float | None = None
    blur_kernel_fraction: float | None = None
    num_preview_images: int = 8
    views_per_image: int = 6
    benchmark_batch_size: int = 256
    benchmark_seconds: float = 3.0
    seed: int = 0


_POLICY_HELP = {
    "crop_area_min": "Random resized crop: smallest area fraction (default 0.08).",
    "crop_area_max": "Random resized crop: largest area fraction (default 1.0).",
    "crop_aspect_min": "Random resized crop: smallest aspect ratio w/h (default 3/4).",
    "crop_aspect_max": "Random resized crop: largest aspect ratio w/h (default 4/3).",
    "flip_prob": "Horizontal flip probability (default 0.5).",
    "color_jitter_strength": "Colour jitter strength s: brightness, contrast, saturation "
    "0.8s, hue 0.2s (default 0.5).",
    "color_jitter_prob": "Colour jitter probability (default 0.8).",
    "color_jitter_random_order": "Apply the four jitter ops in a random order (default true).",
    "color_jitter_version": "v1: additive brightness, as the code behind SimCLR's CIFAR-10 "
    "result (default); v2: multiplicative brightness, as SimCLR v2's code.",
    "grayscale_prob": "Grayscale probability (default 0.2).",
    "blur": "Gaussian blur on/off (default off, as SimCLR on CIFAR-10).",
    "blur_prob": "Gaussian blur probability when --blur (default 0.5).",
    "blur_sigma_min": "Gaussian blur: smallest sigma in pixels (default 0.1).",
    "blur_sigma_max": "Gaussian blur: largest sigma in pixels (default 2.0).",
    "blur_kernel_fraction": "Gaussian blur kernel size as a fraction of the side (default 0.1).",
}
_HELP = {
    "data_dir": "prepare_data output (local, gs:// or s3://).",
    "output_dir": "Where policy.json, preview.png and metrics.json go (local, gs:// or s3://).",
    "policy": "Start from this policy.json (local, gs:// or s3://) instead of the defaults.",
    **_POLICY_HELP,
    "num_preview_images": "Rows in preview.png (train images, in file order).",
    "views_per_image": "Augmented views per row of preview.png.",
    "benchmark_batch_size": "Batch size of the speed measurement.",
    "benchmark_seconds": "Seconds each speed measurement runs after warm-up.",
    "seed": "Seed of the preview's views.",
}
_REQUIRED = ("data_dir", "output_dir")


def define_flags() -> None:
    """Defines the flags (skipping names another task in this process already defined)."""
    define_dataclass_flags(AugmentConfig, _HELP)


def config_from_flags(values: flags.FlagValues) -> AugmentConfig:
    return dataclass_from_flags(AugmentConfig, values)


def build_policy(config: AugmentConfig):
    """The policy: --policy file (or defaults) with the policy flags given applied."""
    from simclr.augment import AugmentPolicy, PolicyError, load_policy

    base = load_policy(config.policy) if config.policy else AugmentPolicy()
    overrides = {
        name: getattr(config, name) for name in _POLICY_HELP if getattr(config, name) is not None
    }
    try:
        return AugmentPolicy.from_dict({**base.to_dict(), **overrides})
    except PolicyError as err:
        source = f"--{err.field}" if err.field in overrides else f"--policy={config.policy}"
        raise UserError(f"{source}: {err}") from None


def _check(config: AugmentConfig) -> None:
    for name in _REQUIRED:
        if not getattr(config, name):
            raise UserError(f"--{name} is required")
    for name in ("num_preview_images", "views_per_image", "benchmark_batch_size"):
        if int(getattr(config, name)) < 1:
            raise UserError(f"--{name} must be >= 1, got {getattr(config, name)}")
    if not float(config.benchmark_seconds) >= 0:
        raise UserError(f"--benchmark_seconds must be >= 0, got {config.benchmark_seconds}")


def render_preview(originals: np.ndarray, views: np.ndarray) -> Any:
    """A PIL image: row i = originals[i] then views[i, 0..V-1], upscaled, white gutters.

    originals uint8 [N,H,W,3]; views float32 [N,V,H,W,3] in [0,1]. The original is set
    off from its views by a wider gutter.
    """
    from PIL import Image

    count, num_views, height, width = views.shape[:4]
    cell_h, cell_w = height * PREVIEW_SCALE, width * PREVIEW_SCALE
    gap = GUTTER
    canvas_w = gap + (cell_w + gap) * (num_views + 1) + 2 * gap
    canvas_h = gap + (cell_h + gap) * count
    canvas = np.full((canvas_h, canvas_w, 3), 255, np.uint8)
    tiles = np.concatenate([originals[:, None], np.round(views * 255.0).astype(np.uint8)], axis=1)
    for row in range(count):
        for col in range(num_views + 1):
            tile = tiles[row, col].repeat(PREVIEW_SCALE, axis=0).repeat(PREVIEW_SCALE, axis=1)
            top = gap + row * (cell_h + gap)
            left = gap + col * (cell_w + gap) + (2 * gap if col > 0 else 0)
            canvas[top : top + cell_h, left : left + cell_w] = tile
    return Image.fromarray(canvas)


def _preview_views(images: np.ndarray, policy: Any, views_per_image: int, seed: int) -> np.ndarray:
    from simclr.augment import augment_batch

    repeated = np.repeat(images, views_per_image, axis=0)  # image-major: row i's views together
    views = augment_batch(repeated, policy, seed).numpy()
    return views.reshape(len(images), views_per_image, *images.shape[1:])


def run(config: AugmentConfig) -> dict[str, Any]:
    _check(config)
    policy = build_policy(config)  # bad values fail here, before anything is written
    from simclr import data, storage
    from simclr.augment import save_policy
    from simclr.bench.augment import compare

    storage.check_writable(config.output_dir, "--output_dir")  # before any work
    data.load_manifest(config.data_dir)
    wanted = max(config.num_preview_images, config.benchmark_batch_size)
    images, _ = data.load_arrays(config.data_dir, "train", max_examples=wanted)
    if len(images) == 0:
        raise UserError(f"--data_dir={config.data_dir}: the train split has no images")
    sample = images[: config.num_preview_images]
    views = _preview_views(sample, policy, config.views_per_image, config.seed)
    metrics = compare(images, policy, config.benchmark_batch_size, config.benchmark_seconds)
    metrics.update(
        {
            "benchmark_seconds": config.benchmark_seconds,
            "num_preview_images": len(sample),
            "views_per_image": config.views_per_image,
        }
    )
    with storage.atomic_dir(config.output_dir, last=(METRICS_FILE,)) as staging:
        save_policy(policy, os.path.join(staging, POLICY_FILE))
        render_preview(sample, views).save(os.path.join(staging, PREVIEW_FILE))
        storage.write_json(os.path.join(staging, METRICS_FILE), metrics)
    return metrics


def main(argv: list[str] | None = None) -> None:
    run_task(define_flags, config_from_flags, run, argv)


if __name__ == "__main__":
    main()
