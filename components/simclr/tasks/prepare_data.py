"""prepare_data: a CIFAR-10 archive or your own images -> TFRecord shards, manifest.json.

python -m simclr.tasks.prepare_data --source=URI --output_dir=DIR [--sha256=HEX]
    [--num_shards=N] [--label_fractions=0.01,0.1] [--seed=0] [--cache_dir=DIR]
    [--image_size=N] [--stored_size=N] [--on_bad_image=skip|fail] [--test_fraction=F]
    [--eval_source=URI]

The layout is told from `--source` alone (`simclr.images.detect_source_kind`): a CIFAR-10
archive (https:// URL or a .tar.gz/.tgz/.tar name) goes through `simclr.cifar` exactly as
before (manifest format_version 1, raw 32x32 records); a folder, gs:// or s3:// prefix of
pictures, or a CSV/JSONL list, goes through `simclr.images.ingest` (format_version 2).
Every flag is a `PrepareDataConfig` knob; the image ones are `simclr.images.IngestOptions`' own
(default, help and rule).
`--eval_source` (image sources only): a separate labelled source that evaluate scores
on, ingested into DIR/eval/ with its own train/test splits; all of `--source` is then
training data.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from absl import flags

from simclr import cifar, coerce, data, knobs, storage
from simclr.errors import UserError
from simclr.images.options import IngestOptions
from simclr.images.sources import CIFAR_ARCHIVE, IMAGE_FOLDER, detect_source_kind
from simclr.knobs import knob
from simclr.tasks._app import dataclass_from_flags, define_dataclass_flags, run_task

_log = logging.getLogger(__name__)


CIFAR_NUM_SHARDS = 16  # the archive's training shards unless --num_shards says otherwise
CIFAR_IMAGE_SIZE = 32
_INGEST_FIELDS = {f.name: f for f in dataclasses.fields(IngestOptions)}
SOURCE_HELP = (
    "CIFAR-10 archive (binary or python layout; https:// URL or a .tar.gz/.tgz/.tar path, "
    "gs:// or s3:// URI), or your own images: a folder, gs:// or s3:// prefix of "
    "JPEG/PNG/WebP/BMP files (class subfolders are labels, a flat folder is unlabelled) or "
    "a CSV/JSONL list of path[,label]."
)
EVAL_SOURCE_HELP = (
    "A separate labelled image source (folder, gs:// or s3:// prefix, or list; class "
    "subfolders or a label column) to evaluate on: ingested at the same sizes into "
    "DIR/eval/ with its own train/test split (--test_fraction) and label subsets, which "
    "evaluate's kNN, linear and fine-tuning use. All of --source is then training data "
    "(it may be unlabelled). Image sources only."
)


def _image_knob(name: str, note: str = "", default: Any = dataclasses.MISSING) -> Any:
    """The field of IngestOptions' `name`: its default, help (+ `note`) and rule."""
    field = _INGEST_FIELDS[name]
    metadata = {**field.metadata, knobs.HELP: knobs.help_of(field) + note}
    default = field.default if default is dataclasses.MISSING else default
    return dataclasses.field(default=default, metadata=metadata)


# Settings that only mean something for image sources (the archive has fixed pictures
# and its own test split): given with an archive, they are logged as ignored.
IMAGE_ONLY = ("on_bad_image", "test_fraction")


@dataclass
class PrepareDataConfig:
    output_dir: str = knob(
        help="Where to write the TFRecords and manifest.json (path, gs:// or s3://)."
    )
    source: str = knob(cifar.DEFAULT_SOURCE, SOURCE_HELP)
    sha256: str | None = knob(None, "Expected sha256 of the archive (checked when given).")
    num_shards: int | None = _image_knob("num_shards", f" CIFAR-10 archive: {CIFAR_NUM_SHARDS}.")
    label_fractions: tuple[float, ...] = _image_knob("label_fractions")
    seed: int = _image_knob("seed")
    cache_dir: str | None = knob(
        None, "Download cache (default: $SIMCLR_CACHE_DIR or ~/.cache/simclr-kfp)."
    )
    image_size: int | None = _image_knob(
        "image_size",
        f" Default {CIFAR_IMAGE_SIZE}; the CIFAR-10 archive is {CIFAR_IMAGE_SIZE} only.",
        default=None,
    )
    stored_size: int | None = _image_knob("stored_size")
    on_bad_image: str = _image_knob("on_bad_image")
    test_fraction: float = _image_knob(
        "test_fraction", " Image sources only (the archive has its own test split)."
    )
    eval_source: str | None = knob(None, EVAL_SOURCE_HELP)


def define_flags() -> None:
    """One flag per PrepareDataConfig field (its name, default, help and rule)."""
    define_dataclass_flags(PrepareDataConfig)


def config_from_flags(values: flags.FlagValues) -> PrepareDataConfig:
    return dataclass_from_flags(PrepareDataConfig, values)


def parse_fractions(value: Any) -> tuple[float, ...]:
    """ "0.01,0.1" or a sequence of numbers/strings -> sorted unique floats."""
    fractions = coerce.to_type(value, tuple[float, ...], "--label_fractions")
    return tuple(sorted(set(fractions)))


def run(config: PrepareDataConfig) -> dict[str, Any]:
    """Writes the data directory from the archive or the images; returns the manifest."""
    if not config.output_dir:
        raise UserError("--output_dir is required")
    config = dataclasses.replace(config, label_fractions=parse_fractions(config.label_fractions))
    knobs.check(config)
    if detect_source_kind(config.source) != CIFAR_ARCHIVE:
        return run_images(config)
    if config.eval_source:
        raise UserError(
            "--eval_source: the CIFAR-10 archive has its own labelled test split; "
            "--eval_source goes with an image --source"
        )
    return run_archive(config)


def ingest_options_of(config: PrepareDataConfig) -> IngestOptions:
    """The IngestOptions of an image source (validated: one line naming the flag)."""
    options = IngestOptions(
        image_size=int(config.image_size or CIFAR_IMAGE_SIZE),
        stored_size=config.stored_size,
        num_shards=config.num_shards,
        test_fraction=float(config.test_fraction),
        label_fractions=config.label_fractions,
        on_bad_image=config.on_bad_image,
        seed=int(config.seed),
    )
    options.validate()
    return options


def run_images(config: PrepareDataConfig) -> dict[str, Any]:
    from simclr.images import ingest

    if config.sha256:
        raise UserError("--sha256 checks a CIFAR-10 archive; --source names images")
    _check_exists(config.source, "--source")
    options = ingest_options_of(config)
    if not config.eval_source:
        return ingest(config.source, config.output_dir, options).manifest
    _check_exists(config.eval_source, "--eval_source")
    if detect_source_kind(config.eval_source) == CIFAR_ARCHIVE:
        raise UserError(
            f"--eval_source {config.eval_source}: a CIFAR-10 archive; give its images as a "
            "folder or list"
        )
    if not options.test_fraction:
        raise UserError("--eval_source needs --test_fraction > 0 (its held-out test split)")
    # The training source keeps every image; the test split comes from --eval_source.
    training = dataclasses.replace(options, test_fraction=0.0, label_fractions=())
    return ingest(
        config.source, config.output_dir, training, evaluation=(config.eval_source, options)
    ).manifest


def _check_exists(source: str, flag: str) -> None:
    if detect_source_kind(source) == IMAGE_FOLDER and not _anything_at(source):
        # Neither a file nor a folder/prefix: say so as the archive path does (a mistyped
        # archive name is the likely cause), not "the prefix holds no files".
        message = f"{source}: not found"
        raise UserError(message if flag == "--source" else f"{flag} {message}")


def _anything_at(source: str) -> bool:
    if storage.is_remote(source):
        return storage.exists(source) or bool(storage.list_files(source.rstrip("/")))
    return os.path.exists(storage.local_path(source))


def run_archive(config: PrepareDataConfig) -> dict[str, Any]:
    """Ingests the CIFAR-10 archive (unchanged from before image sources existed)."""
    start = time.perf_counter()
    if config.image_size not in (None, CIFAR_IMAGE_SIZE):
        raise UserError(
            f"--image_size {config.image_size}: the CIFAR-10 archive holds "
            f"{CIFAR_IMAGE_SIZE}x{CIFAR_IMAGE_SIZE} images (use an image folder for other sizes)"
        )
    if config.stored_size not in (None, CIFAR_IMAGE_SIZE):
        raise UserError(
            f"--stored_size {config.stored_size}: the CIFAR-10 archive is stored at "
            f"{CIFAR_IMAGE_SIZE}x{CIFAR_IMAGE_SIZE}"
        )
    for name in IMAGE_ONLY:
        if getattr(config, name) != _INGEST_FIELDS[name].default:
            _log.info("--%s applies to image sources; ignored for the CIFAR-10 archive", name)
    config = dataclasses.replace(config, num_shards=config.num_shards or CIFAR_NUM_SHARDS)
    fractions = config.label_fractions
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
