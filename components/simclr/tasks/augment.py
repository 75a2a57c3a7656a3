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

import dataclasses
import os
import typing
from typing import Any

import numpy as np
from absl import flags
from PIL import Image

from simclr import data, knobs, storage
from simclr.augment import AugmentPolicy, PolicyError, default_policy, load_policy, save_policy
from simclr.errors import UserError
from simclr.knobs import knob
from simclr.tasks._app import dataclass_from_flags, define_dataclass_flags, run_task

POLICY_FILE = "policy.json"
PREVIEW_FILE = "preview.png"
METRICS_FILE = "metrics.json"
PREVIEW_SCALE = 3
GUTTER = 4


def _policy_overrides() -> list[tuple[str, Any, Any]]:
    """One optional field per `AugmentPolicy` field, with its help: None keeps the
    --policy file's value (or the preset's), so the flags cannot drift from the policy."""
    hints = typing.get_type_hints(AugmentPolicy)
    return [
        (field.name, hints[field.name] | None, knob(None, _with_default(field)))
        for field in dataclasses.fields(AugmentPolicy)
    ]


def _with_default(field: dataclasses.Field) -> str:
    value = field.default
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, float):
        value = f"{value:g}"
    return f"{knobs.help_of(field)} (CIFAR-10 preset: {value})"


POLICY_FLAGS = tuple(field.name for field in dataclasses.fields(AugmentPolicy))

AugmentConfig = dataclasses.make_dataclass(
    "AugmentConfig",
    [
        ("data_dir", str, knob(help="prepare_data output (local, gs:// or s3://).")),
        (
            "output_dir",
            str,
            knob(
                help="Where policy.json, preview.png and metrics.json go (local, gs:// or s3://)."
            ),
        ),
        (
            "policy",
            str | None,
            knob(
                None, "Start from this policy.json (local, gs:// or s3://) instead of the defaults."
            ),
        ),
        *_policy_overrides(),
        (
            "num_preview_images",
            int,
            knob(8, "Rows in preview.png (train images, in file order).", at_least=1),
        ),
        ("views_per_image", int, knob(6, "Augmented views per row of preview.png.", at_least=1)),
        (
            "benchmark_batch_size",
            int,
            knob(256, "Batch size of the speed measurement.", at_least=1),
        ),
        (
            "benchmark_seconds",
            float,
            knob(3.0, "Seconds each speed measurement runs after warm-up.", at_least=0),
        ),
        ("seed", int, knob(0, "Seed of the preview's views.")),
    ],
    kw_only=True,
)
AugmentConfig.__module__ = __name__  # pickling and repr name this module
AugmentConfig.__doc__ = """The augment task's flags: paths, one override per policy field, preview
and benchmark settings."""
_REQUIRED = ("data_dir", "output_dir")


def define_flags() -> None:
    """Defines the flags (skipping names another task in this process already defined)."""
    define_dataclass_flags(AugmentConfig)


def config_from_flags(values: flags.FlagValues) -> AugmentConfig:
    return dataclass_from_flags(AugmentConfig, values)


def build_policy(config: AugmentConfig):
    """The policy: --policy file (or defaults) with the policy flags given applied."""
    # No --policy: the preset for the data's image size (CIFAR-10 <= 32 px, else ImageNet).
    base = load_policy(config.policy) if config.policy else default_policy(_image_size(config))
    overrides = {
        name: getattr(config, name) for name in POLICY_FLAGS if getattr(config, name) is not None
    }
    try:
        return AugmentPolicy.from_dict({**base.to_dict(), **overrides})
    except PolicyError as err:
        source = f"--{err.field}" if err.field in overrides else f"--policy={config.policy}"
        raise UserError(f"{source}: {err}") from None


def _image_size(config: AugmentConfig) -> int:
    if config.data_dir and storage.exists(storage.join(config.data_dir, data.MANIFEST)):
        return data.image_size(data.load_manifest(config.data_dir))
    return data.IMAGE_SHAPE[0]


def _check(config: AugmentConfig) -> None:
    for name in _REQUIRED:
        if not getattr(config, name):
            raise UserError(f"--{name} is required")
    knobs.check(config)


def render_preview(originals: np.ndarray, views: np.ndarray) -> Any:
    """A PIL image: row i = originals[i] then views[i, 0..V-1], upscaled, white gutters.

    originals uint8 [N,H,W,3]; views float32 [N,V,H,W,3] in [0,1]. The original is set
    off from its views by a wider gutter.
    """
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
    from simclr.augment.ops import augment_batch

    repeated = np.repeat(images, views_per_image, axis=0)  # image-major: row i's views together
    views = augment_batch(repeated, policy, seed).numpy()
    return views.reshape(len(images), views_per_image, *images.shape[1:])


def run(config: AugmentConfig) -> dict[str, Any]:
    _check(config)
    policy = build_policy(config)  # bad values fail here, before anything is written
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
