"""prepare_data: CIFAR-10 archive -> sharded TFRecords, labelled subsets, manifest.json.

python -m simclr.tasks.prepare_data --source=URI --output_dir=DIR [--sha256=HEX]
    [--num_shards=16] [--label_fractions=0.01,0.1] [--seed=0] [--cache_dir=DIR]
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from absl import flags

from simclr import cifar, data, storage
from simclr.errors import UserError
from simclr.tasks._app import run_task

_log = logging.getLogger(__name__)


@dataclass
class PrepareDataConfig:
    output_dir: str
    source: str = cifar.DEFAULT_SOURCE
    sha256: str | None = None
    num_shards: int = 16
    label_fractions: tuple[float, ...] = (0.01, 0.1)
    seed: int = 0
    cache_dir: str | None = None


def define_flags() -> None:
    flags.DEFINE_string(
        "source",
        cifar.DEFAULT_SOURCE,
        "CIFAR-10 archive (binary or python layout): https:// URL, gs:// or s3:// URI, or local path.",
    )
    flags.DEFINE_string(
        "output_dir", None, "Where to write the TFRecords and manifest.json (path, gs:// or s3://)."
    )
    flags.DEFINE_string("sha256", None, "Expected sha256 of the archive (checked when given).")
    flags.DEFINE_integer(
        "num_shards", 16, "Training shards; the test split gets max(1, num_shards // 5)."
    )
    flags.DEFINE_list(
        "label_fractions", ["0.01", "0.1"], "Class-balanced labelled subsets of train."
    )
    flags.DEFINE_integer("seed", 0, "Seed for choosing the labelled subsets.")
    flags.DEFINE_string(
        "cache_dir", None, "Download cache (default: $SIMCLR_CACHE_DIR or ~/.cache/simclr-kfp)."
    )


def config_from_flags(values: flags.FlagValues) -> PrepareDataConfig:
    if not values.output_dir:
        raise UserError("--output_dir is required")
    return PrepareDataConfig(
        source=values.source,
        output_dir=values.output_dir,
        sha256=values.sha256 or None,
        num_shards=values.num_shards,
        label_fractions=parse_fractions(values.label_fractions),
        seed=values.seed,
        cache_dir=values.cache_dir or None,
    )


def parse_fractions(value: Any) -> tuple[float, ...]:
    """ "0.01,0.1" or a sequence of numbers/strings -> sorted unique floats in (0, 1]."""
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        fractions = sorted({float(str(v).strip()) for v in items if str(v).strip()})
    except ValueError:
        raise UserError(f"--label_fractions must be numbers, got {value!r}") from None
    for f in fractions:
        if not 0 < f <= 1:
            raise UserError(f"--label_fractions values must be in (0, 1], got {f:g}")
    return tuple(fractions)


def run(config: PrepareDataConfig) -> dict[str, Any]:
    """Ingests the archive and writes the data directory; returns the manifest."""
    start = time.perf_counter()
    fractions = parse_fractions(config.label_fractions)
    if int(config.num_shards) < 1:
        raise UserError(f"--num_shards must be >= 1, got {config.num_shards}")
    if int(config.seed) < 0:
        raise UserError(f"--seed must be >= 0, got {config.seed}")
    if not config.output_dir:
        raise UserError("--output_dir is required")
    storage.check_writable(config.output_dir, "--output_dir")  # before the download
    cifar.check_sha256_flag(config.sha256)
    path = cifar.fetch(config.source, config.cache_dir, config.sha256)
    source_entry = cifar.verify(config.source, path, config.sha256)
    archive = cifar.read_archive(path)
    source_entry["layout"] = archive.layout
    _log.info(
        "read %s (%s layout) in %.1fs", config.source, archive.layout, time.perf_counter() - start
    )
    train_shards = int(config.num_shards)
    if train_shards > len(archive.train_labels):
        raise UserError(
            f"--num_shards {train_shards} exceeds the {len(archive.train_labels)} training images"
        )
    test_shards = min(max(1, train_shards // 5), len(archive.test_labels))

    with storage.atomic_dir(config.output_dir, last=(data.MANIFEST,)) as staging:
        manifest = {
            "format_version": data.FORMAT_VERSION,
            "image_format": "raw_uint8",
            "image_shape": list(data.IMAGE_SHAPE),
            "class_names": archive.class_names,
            "splits": {
                data.TRAIN: data.write_split(
                    staging, data.TRAIN, archive.train_images, archive.train_labels, train_shards
                ),
                data.TEST: data.write_split(
                    staging, data.TEST, archive.test_images, archive.test_labels, test_shards
                ),
            },
            "label_subsets": _write_subsets(staging, archive, fractions, int(config.seed)),
            "source": source_entry,
            "seed": int(config.seed),
        }
        with open(os.path.join(staging, data.MANIFEST), "w", encoding="utf-8") as f:
            f.write(data.manifest_json(manifest))
    _log.info("wrote %s in %.1fs", config.output_dir, time.perf_counter() - start)
    return manifest


def _write_subsets(
    staging: str, archive: cifar.Cifar10, fractions: tuple[float, ...], seed: int
) -> dict[str, Any]:
    subsets = {}
    for fraction in fractions:
        key = data.subset_name(fraction)
        indices = data.balanced_subset(archive.train_labels, fraction, seed)
        labels = archive.train_labels[indices]
        written = data.write_records(
            os.path.join(staging, f"{data.LABEL_PREFIX}{key}.tfrecord"),
            archive.train_images[indices],
            labels,
        )
        subsets[key] = {
            "fraction": fraction,
            "file": written["file"],
            "num_examples": written["num_examples"],
            "sha256": written["sha256"],
            "class_counts": data.class_counts(labels),
            "indices_sha256": data.indices_sha256(indices),
            "seed": seed,
        }
    return subsets


def main(argv: list[str] | None = None) -> None:
    run_task(define_flags, config_from_flags, run, argv)


if __name__ == "__main__":
    main()
