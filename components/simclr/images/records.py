"""Records of an image dataset: tf.train.Example, a local spool, and TFRecord shards
(TensorFlow-free: `simclr.tfexample` writes them; `simclr.images.parsing` reads them).

Each record is a `tf.train.Example` with

    image   bytes   the encoded picture (JPEG or PNG: the manifest's `image_format`)
    label   int64   class index into the manifest's `class_names`; -1 when unlabelled
    height  int64   stored height (the shorter side is the manifest's `stored_size`)
    width   int64   stored width
    path    bytes   UTF-8: the file's path relative to the source folder, or as the
                    image list wrote it (so embeddings and galleries can name it)

Accepted pictures are first appended to a spool file in source order (the splits can
only be drawn once every file has been seen: bad files and duplicates are known only
after decoding), then copied into the shards in each split's order. Both are local
files; memory holds only offsets.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Sequence
from typing import Any

import numpy as np

from simclr import tfexample
from simclr.data import sha256_file, shard_name

RECORD_FEATURES = {
    "image": "bytes: the encoded picture (image_format)",
    "label": "int64: index into class_names; -1 when unlabelled",
    "height": "int64: stored height in pixels",
    "width": "int64: stored width in pixels",
    "path": "bytes (UTF-8): path relative to the source folder, or as the image list wrote it",
}


def example_bytes(image: bytes, label: int, height: int, width: int, path: str) -> bytes:
    """One serialized tf.train.Example (deterministic: the same fields give the same bytes)."""
    fields = {"image": image, "label": label, "height": height, "width": width}
    return tfexample.example_bytes({**fields, "path": path.encode("utf-8")})


class Spool:
    """Append-only local file of serialized records; read back by index."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = open(path, "wb")  # noqa: SIM115 (closed by close())
        self._offsets = array("q")  # 8 bytes a record, whatever the count
        self._lengths = array("q")
        self._end = 0
        self._fd: int | None = None

    def __len__(self) -> int:
        return len(self._offsets)

    def append(self, record: bytes) -> int:
        self._file.write(record)
        self._offsets.append(self._end)
        self._lengths.append(len(record))
        self._end += len(record)
        return len(self._offsets) - 1

    def num_bytes(self, indices: Sequence[int] | np.ndarray) -> int:
        lengths = np.frombuffer(self._lengths, np.int64)
        return int(lengths[np.asarray(indices, np.int64)].sum()) if len(indices) else 0

    def read(self, index: int) -> bytes:
        if self._fd is None:
            self._file.flush()
            self._fd = os.open(self.path, os.O_RDONLY)
        return os.pread(self._fd, self._lengths[index], self._offsets[index])

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        self.close()
        if os.path.exists(self.path):
            os.remove(self.path)


def write_records(spool: Spool, indices: Sequence[int] | np.ndarray, path: str) -> dict[str, Any]:
    """Writes spool records `indices`, in that order, as one TFRecord file."""
    with open(path, "wb") as f:
        for index in indices:
            f.write(tfexample.frame(spool.read(int(index))))
    return {
        "file": os.path.basename(path),
        "num_examples": int(len(indices)),
        "sha256": sha256_file(path),
    }


def shard_bounds(count: int, num_shards: int) -> list[tuple[int, int]]:
    """Contiguous [lo, hi) blocks, as even as possible (the CIFAR writer's rule)."""
    bounds = np.linspace(0, count, num_shards + 1).round().astype(int)
    return [(int(bounds[i]), int(bounds[i + 1])) for i in range(num_shards)]


def write_shards(
    spool: Spool, indices: np.ndarray, out_dir: str, split: str, num_shards: int
) -> list[dict[str, Any]]:
    return [
        write_records(
            spool, indices[lo:hi], os.path.join(out_dir, shard_name(split, i, num_shards))
        )
        for i, (lo, hi) in enumerate(shard_bounds(len(indices), num_shards))
    ]
