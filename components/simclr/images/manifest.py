"""manifest.json of an image dataset (format_version 2).

A superset of the CIFAR-10 manifest (format_version 1) in every key a reader of both
uses (`class_names`, `splits.<name>.{num_examples, class_counts, files, shards}`,
`label_subsets`, `source.{uri, sha256}`, `seed`), plus what varies with images:
`image_format` "jpeg" | "png" (v1: "raw_uint8"), `image_size`, `stored_size`, `labelled`,
`record_features`, and the ingest's account: `skipped`, `duplicates`, `counts`,
`ingest` (the settings). No timestamps and sorted keys: the same input gives the same
bytes. docs/design.md ("Image datasets") says what a reader must do with it.
"""

from __future__ import annotations

import math
from typing import Any

from simclr.images.records import RECORD_FEATURES

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
SHARD_TARGET_BYTES = 128 << 20  # tensorflow.org TFRecord guide: files "ideally 100 MB+"
SHARD_MIN_BYTES = 10 << 20  # ... and "at least 10 MB+"
PREFERRED_SHARDS = 16  # enough files for 16 input pipelines to split whole files


def auto_num_shards(num_bytes: int, num_examples: int) -> int:
    """About SHARD_TARGET_BYTES a shard, but 16 shards while each keeps >= 10 MiB.

    The guide's rule (site/en/tutorials/load_data/tfrecord.ipynb, tensorflow/docs):
    ~10 files per reading host as long as each is 10 MB+, ideally 100 MB+.
    """
    by_target = math.ceil(num_bytes / SHARD_TARGET_BYTES)
    by_parallelism = min(PREFERRED_SHARDS, num_bytes // SHARD_MIN_BYTES)
    return int(max(1, min(num_examples, max(by_target, by_parallelism))))


def split_entry(shards: list[dict[str, Any]], class_counts: list[int]) -> dict[str, Any]:
    return {
        "num_examples": sum(s["num_examples"] for s in shards),
        "class_counts": class_counts,
        "files": [s["file"] for s in shards],
        "shards": shards,
    }


def build_manifest(
    *,
    image_format: str,
    image_size: int,
    stored_size: int,
    class_names: list[str],
    splits: dict[str, Any],
    label_subsets: dict[str, Any],
    source: dict[str, Any],
    skipped: list[dict[str, str]],
    duplicates: list[dict[str, str]],
    counts: dict[str, Any],
    settings: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "image_format": image_format,
        "image_size": int(image_size),
        "stored_size": int(stored_size),
        "channels": 3,
        "labelled": bool(class_names),
        "class_names": list(class_names),
        "record_features": dict(RECORD_FEATURES),
        "splits": splits,
        "label_subsets": label_subsets,
        "source": source,
        "skipped": skipped,
        "duplicates": duplicates,
        "counts": counts,
        "ingest": settings,
        "seed": int(seed),
    }
