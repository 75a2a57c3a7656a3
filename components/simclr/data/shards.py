"""The shards of a split: their names, writing a split as contiguous shards, and
finding and verifying a split's files (sha256 and record count, once per process)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from simclr import tfexample
from simclr.data.manifest import _split_entries, load_manifest, local_data_dir
from simclr.data.records import _FRAME_HEAD, _FRAME_TAIL, RECORD_BYTES, serialize_examples
from simclr.data.subsets import class_counts
from simclr.errors import UserError


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def write_records(path: str, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Writes one local TFRecord file; returns {"file", "num_examples", "sha256"}."""
    with open(path, "wb") as f:
        for row in serialize_examples(images, labels):
            f.write(tfexample.frame(row.tobytes()))
    return {
        "file": os.path.basename(path),
        "num_examples": int(len(images)),
        "sha256": sha256_file(path),
    }


def write_split(
    out_dir: str, split: str, images: np.ndarray, labels: np.ndarray, num_shards: int
) -> dict[str, Any]:
    """Writes `split` as `num_shards` contiguous shards (source order) into a local dir.

    Returns the manifest entry: num_examples, class_counts, files, shards.
    """
    shards = []
    bounds = np.linspace(0, len(images), num_shards + 1).round().astype(int)
    for i in range(num_shards):
        lo, hi = bounds[i], bounds[i + 1]
        path = os.path.join(out_dir, shard_name(split, i, num_shards))
        shards.append(write_records(path, images[lo:hi], labels[lo:hi]))
    return {
        "num_examples": int(len(images)),
        "class_counts": class_counts(labels),
        "files": [s["file"] for s in shards],
        "shards": shards,
    }


def sha256_file(path: str) -> str:
    """Hex sha256 of a local file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def record_files(data_dir: str, split: str) -> list[str]:
    """Local paths of the TFRecord files of `split`, in order (localizes gs:// data)."""
    local = local_data_dir(data_dir)
    return verified_files(local, load_manifest(local), split, data_dir)


def verified_files(local: str, manifest: dict[str, Any], split: str, where: str) -> list[str]:
    """The files of `split` under the local dir `local`, each checked by `verify_shard`
    (also for manifests that `load_manifest` does not read, e.g. image datasets)."""
    entries = _split_entries(manifest, split, where)
    paths = [os.path.join(local, e["file"]) for e in entries]
    for path, entry in zip(paths, entries, strict=True):
        if not os.path.isfile(path):
            raise UserError(
                f"{where}: file {os.path.basename(path)} listed in the manifest is missing"
            )
        verify_shard(path, entry, where)
    return paths


_VERIFIED: set[tuple[str, int, int, str]] = set()  # (path, size, mtime_ns, sha256) this process


def verify_shard(path: str, entry: dict[str, Any], where: str) -> None:
    """Checks a shard once per process against its manifest entry: the sha256 (when the
    manifest has one) and, for files in our fixed record layout, the record count."""
    info = os.stat(path)
    key = (path, info.st_size, info.st_mtime_ns, str(entry.get("sha256")))
    if key in _VERIFIED:
        return
    name = os.path.basename(path)
    expected = entry.get("sha256")
    if expected and sha256_file(path) != expected:
        raise UserError(
            f"{where}: shard {name} is corrupt: its sha256 differs from the manifest's "
            "(re-run prepare-data or re-copy the data)"
        )
    frame = _FRAME_HEAD + RECORD_BYTES + _FRAME_TAIL
    count = entry.get("num_examples")
    if count is not None and info.st_size % frame == 0 and info.st_size // frame != count:
        raise UserError(
            f"{where}: shard {name} holds {info.st_size // frame} records, the manifest "
            f"says {count}"
        )
    _VERIFIED.add(key)
