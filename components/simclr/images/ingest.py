"""ingest_images: a folder, bucket prefix or image list -> TFRecord shards + manifest.json.

    listing (sorted) -> stream (read, dedup, convert in parallel, in order) -> spool
    -> test split / record order / label subsets from the seed -> shards -> manifest

The output is staged locally and published by `storage.atomic_dir` with manifest.json
last; on any error (`--on_bad_image=fail` included) nothing is published.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simclr import storage
from simclr.data import indices_sha256, manifest_json, subset_name
from simclr.errors import UserError
from simclr.images import manifest as manifest_layout
from simclr.images import splits as split_rules
from simclr.images.convert import Converted, ConvertSpec
from simclr.images.decode import BACKGROUND
from simclr.images.options import IngestOptions
from simclr.images.progress import Progress
from simclr.images.records import Spool, example_bytes, write_records, write_shards
from simclr.images.sources import SourceListing, list_source
from simclr.images.stream import Duplicate, convert_stream

_log = logging.getLogger(__name__)

TRAIN, TEST = "train", "test"
LABEL_PREFIX = "label_"
EVAL_DIR = "eval"  # --eval_source's dataset, inside the output directory
SPOOL_NAME = ".ingest-spool"


@dataclass
class IngestStats:
    """How the run went (not part of the output: it varies between runs)."""

    seconds: float = 0.0
    files: int = 0
    images: int = 0
    workers: int = 0  # processes asked for
    worker_processes: int = 0  # distinct processes that converted at least one image

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass
class IngestRun:
    manifest: dict[str, Any]
    stats: IngestStats


@dataclass
class _Tally:
    """What the stream produced, in source order."""

    labels: array = field(default_factory=lambda: array("q"))  # of each spooled image
    skipped: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[dict[str, str]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    formats: Counter = field(default_factory=Counter)
    modes: Counter = field(default_factory=Counter)
    content: Any = field(default_factory=hashlib.sha256)
    pids: set[int] = field(default_factory=set)

    def skip(self, path: str, kind: str, reason: str) -> None:
        self.skipped.append({"path": path, "kind": kind, "reason": reason})


def ingest_images(source: str, output_dir: str, options: IngestOptions) -> dict[str, Any]:
    """Ingests `source` into `output_dir`; returns the manifest it wrote."""
    return ingest(source, output_dir, options).manifest


def ingest(
    source: str,
    output_dir: str,
    options: IngestOptions,
    evaluation: tuple[str, IngestOptions] | None = None,
) -> IngestRun:
    """ingest_images, also returning the run's statistics.

    `evaluation` (`--eval_source` and its options): a separate labelled source ingested
    into `EVAL_DIR/` beside the training data, as a dataset of its own (train and test
    splits, label subsets); manifest.json's `evaluation` entry points evaluate there.
    It is listed and ingested first (usually the smaller one), so an unlabelled one is
    refused before the training images are read."""
    start = time.perf_counter()
    options = options.resolved()
    if not output_dir:
        raise UserError("--output_dir is required")
    with storage.atomic_dir(output_dir, last=(manifest_layout.MANIFEST,)) as staging:
        evaluation_entry = None
        if evaluation is not None:
            eval_source, eval_options = evaluation
            eval_staging = os.path.join(staging, EVAL_DIR)
            eval_manifest, _, _ = _ingest_into(
                eval_staging,
                eval_source,
                eval_options.resolved(),
                flag="--eval_source",
                require_labels=True,
            )
            _write_manifest(eval_staging, eval_manifest)
            evaluation_entry = _evaluation_entry(eval_manifest)
        manifest, tally, listing = _ingest_into(staging, source, options)
        if evaluation_entry:
            manifest["evaluation"] = evaluation_entry
        _write_manifest(staging, manifest)
    stats = IngestStats(
        seconds=time.perf_counter() - start,
        files=len(listing.files),
        images=len(tally.labels),
        workers=int(options.workers),
        worker_processes=len(tally.pids),
    )
    _log.info(
        "ingest: wrote %s: %d images in %.1fs (%.0f images/s, %d worker processes)",
        output_dir,
        stats.images,
        stats.seconds,
        stats.images_per_second,
        max(1, stats.worker_processes),
    )
    return IngestRun(manifest, stats)


def _ingest_into(
    staging: str,
    source: str,
    options: IngestOptions,
    flag: str = "--source",
    require_labels: bool = False,
):
    """Writes `source`'s shards into the local `staging` dir; returns (manifest, tally,
    listing). The caller writes the manifest (last)."""
    try:
        listing = list_source(source, folder_labels=options.folder_labels)
    except UserError as err:  # the listing's messages name --source
        if flag == "--source" or not str(err).startswith("--source "):
            raise
        raise UserError(flag + str(err)[len("--source") :]) from None
    _log.info(
        "ingest: %s (%s, %s): %d image files%s, %d other files ignored",
        source,
        listing.kind,
        listing.layout,
        len(listing.files),
        f" in {len(listing.class_names)} classes" if listing.labelled else ", unlabelled",
        listing.num_ignored,
    )
    if require_labels and not listing.labelled:
        raise UserError(
            f"{flag} {source} has no labels: it is for the protocols that need them "
            "(class subfolders, or a list with a label column)"
        )
    tally = _Tally()
    for path in listing.outside_classes:
        reason = "an image beside the class folders belongs to no class (ImageFolder layout)"
        if options.on_bad_image == "fail":
            raise UserError(f"{flag} {source}: {path}: {reason} (--on_bad_image=fail)")
        tally.skip(path, "outside_class_folder", reason)
    for path, first in listing.repeated_rows:
        tally.duplicates.append({"path": path, "duplicate_of": first})
    spec = ConvertSpec(
        stored_size=options.stored_size,
        image_format=options.image_format,
        jpeg_quality=options.jpeg_quality,
        max_pixels=options.max_image_pixels,
    )
    os.makedirs(staging, exist_ok=True)
    spool = Spool(os.path.join(staging, SPOOL_NAME))
    try:
        _run_stream(source, listing, spec, options, spool, tally, flag)
        manifest = _write_dataset(staging, source, listing, options, spool, tally, flag)
    finally:
        spool.remove()
    return manifest, tally, listing


def _write_manifest(staging: str, manifest: dict[str, Any]) -> None:
    with open(os.path.join(staging, manifest_layout.MANIFEST), "w", encoding="utf-8") as f:
        f.write(manifest_json(manifest))


def _evaluation_entry(eval_manifest: dict[str, Any]) -> dict[str, Any]:
    """What the training manifest says of its evaluation dataset."""
    splits = eval_manifest["splits"]
    return {
        "data_dir": EVAL_DIR,
        "source": eval_manifest["source"]["uri"],
        "class_names": list(eval_manifest["class_names"]),
        "num_train": int(splits[TRAIN]["num_examples"]),
        "num_test": int(splits.get(TEST, {}).get("num_examples", 0)),
    }


def _run_stream(
    source: str,
    listing: SourceListing,
    spec: ConvertSpec,
    options: IngestOptions,
    spool: Spool,
    tally: _Tally,
    flag: str = "--source",
) -> None:
    remote = storage.is_remote(listing.files[0].uri) if listing.files else False
    stream = convert_stream(
        listing.files,
        spec,
        workers=int(options.workers),
        fetch_threads=16 if remote else 4,
        fetch_window=64 if remote else 16,
    )
    progress = Progress(len(listing.files), "ingest", _log, options.progress_every_s)
    try:
        for done, outcome in enumerate(stream, start=1):
            file, result = outcome.file, outcome.result
            line = f"{file.path}\t{outcome.sha256 or '-'}\t{file.label}\n"
            tally.content.update(line.encode("utf-8"))
            if isinstance(result, Converted):
                record = example_bytes(
                    result.data, file.label, result.height, result.width, file.path
                )
                spool.append(record)
                tally.labels.append(file.label)
                tally.counts[f"resized_{result.resized}"] += 1
                tally.counts["passthrough"] += int(result.passthrough)
                tally.counts["rotated"] += int(result.rotated)
                tally.formats[result.source_format] += 1
                tally.modes[result.source_mode] += 1
                tally.pids.add(result.worker_pid)
            elif isinstance(result, Duplicate):
                tally.duplicates.append({"path": file.path, "duplicate_of": result.of})
            else:
                if options.on_bad_image == "fail":
                    raise UserError(
                        f"{flag} {source}: {file.uri}: {result.reason} (--on_bad_image=fail)"
                    )
                tally.skip(file.path, result.kind, result.reason)
            progress.update(
                done,
                f"{len(tally.labels):,} kept, {len(tally.skipped):,} skipped, "
                f"{len(tally.duplicates):,} duplicates",
            )
    finally:
        stream.close()
    _log.info("%s", progress.line(_summary(tally, listing)))


def _summary(tally: _Tally, listing: SourceListing) -> str:
    kinds = Counter(s["kind"] for s in tally.skipped)
    by_kind = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    text = f"{len(tally.labels):,} kept, {len(tally.skipped):,} skipped"
    text += f" ({by_kind})" if by_kind else ""
    return text + f", {len(tally.duplicates):,} duplicates dropped, {listing.num_ignored:,} ignored"


def _check_classes(
    source: str, listing: SourceListing, labels: np.ndarray, flag: str = "--source"
) -> None:
    if not len(labels):
        raise UserError(f"{flag} {source}: no usable image among {len(listing.files)} files")
    if listing.labelled:
        counts = np.bincount(labels, minlength=len(listing.class_names))
        empty = [listing.class_names[i] for i in np.flatnonzero(counts == 0)]
        if empty:
            raise UserError(
                f"{flag} {source}: class {empty[0]!r} has no usable image "
                "(every file of it was skipped or a duplicate)"
            )


def _write_dataset(
    staging: str,
    source: str,
    listing: SourceListing,
    options: IngestOptions,
    spool: Spool,
    tally: _Tally,
    flag: str = "--source",
) -> dict[str, Any]:
    labels = np.asarray(tally.labels, np.int64)
    _check_classes(source, listing, labels, flag)
    num_classes = len(listing.class_names)
    train, test = split_rules.split_order(labels, num_classes, options.test_fraction, options.seed)
    train_shards = options.num_shards or manifest_layout.auto_num_shards(
        spool.num_bytes(train), len(train)
    )
    if train_shards > len(train):
        raise UserError(f"--num_shards {train_shards} exceeds the {len(train)} training images")
    splits = {
        TRAIN: manifest_layout.split_entry(
            write_shards(spool, train, staging, TRAIN, train_shards),
            split_rules.class_counts(labels[train], num_classes),
        )
    }
    if len(test):
        test_shards = min(max(1, train_shards // 5), len(test))
        splits[TEST] = manifest_layout.split_entry(
            write_shards(spool, test, staging, TEST, test_shards),
            split_rules.class_counts(labels[test], num_classes),
        )
    subsets = _write_subsets(staging, spool, train, labels, num_classes, options)
    return manifest_layout.build_manifest(
        image_format=options.image_format,
        image_size=options.image_size,
        stored_size=options.stored_size,
        class_names=listing.class_names,
        splits=splits,
        label_subsets=subsets,
        source=_source_entry(source, listing, tally),
        skipped=sorted(tally.skipped, key=lambda s: s["path"]),
        duplicates=sorted(tally.duplicates, key=lambda d: d["path"]),
        counts=_counts(listing, tally),
        settings=_settings(options),
        seed=options.seed,
    )


def _write_subsets(
    staging: str,
    spool: Spool,
    train: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    options: IngestOptions,
) -> dict[str, Any]:
    if not num_classes:
        if options.label_fractions:
            _log.info("ingest: unlabelled source: no label subsets")
        return {}
    subsets = {}
    for fraction in options.label_fractions:
        key = subset_name(fraction)
        positions = split_rules.label_subset(labels[train], fraction, options.seed, num_classes)
        chosen = train[positions]
        written = write_records(
            spool, chosen, os.path.join(staging, f"{LABEL_PREFIX}{key}.tfrecord")
        )
        subsets[key] = {
            "fraction": fraction,
            "file": written["file"],
            "num_examples": written["num_examples"],
            "sha256": written["sha256"],
            "class_counts": split_rules.class_counts(labels[chosen], num_classes),
            "indices_sha256": indices_sha256(positions),
            "seed": int(options.seed),
        }
    return subsets


def _source_entry(source: str, listing: SourceListing, tally: _Tally) -> dict[str, Any]:
    return {
        "uri": source,
        "kind": listing.kind,
        "layout": listing.layout,
        # sha256 over "path<TAB>sha256 of its bytes<TAB>label" lines of every file, in order
        "sha256": tally.content.hexdigest(),
        "num_files": len(listing.files),
        "ignored": {"count": listing.num_ignored, "by_extension": dict(listing.ignored)},
    }


def _counts(listing: SourceListing, tally: _Tally) -> dict[str, Any]:
    kinds = Counter(s["kind"] for s in tally.skipped)
    return {
        "images": len(tally.labels),
        "skipped": len(tally.skipped),
        "duplicates": len(tally.duplicates),
        "ignored": listing.num_ignored,
        "skipped_by_kind": dict(sorted(kinds.items())),
        "resized": {how: tally.counts[f"resized_{how}"] for how in ("down", "up", "none")},
        "passthrough": tally.counts["passthrough"],
        "rotated": tally.counts["rotated"],
        "source_formats": dict(sorted(tally.formats.items())),
        "source_modes": dict(sorted(tally.modes.items())),
    }


def _settings(options: IngestOptions) -> dict[str, Any]:
    return {
        "test_fraction": float(options.test_fraction),
        "on_bad_image": options.on_bad_image,
        "max_image_pixels": int(options.max_image_pixels),
        "jpeg_quality": int(options.jpeg_quality),
        "folder_labels": bool(options.folder_labels),
        "alpha_background": list(BACKGROUND),
        "resample": {"down": "lanczos", "up": "bicubic"},
    }
