"""Embeddings on disk: Parquet shards (pyarrow), local, gs:// or s3:// (simclr.storage).

One row per image:

    id         int64                     position in its split (source order of the records)
    path       string (nullable)         the record's source path (image datasets), else null
    label      int64 (nullable)          class index into class_names; null when unlabelled
    embedding  fixed_size_list<float32>[D]  L2-normalised encoder output (the SavedModel's
                                         `embedding`: cosine similarity is a dot product)

Files ``<split>-00000-of-00004.parquet`` (zstd), each split's shards in id order; the
schema's metadata ``simclr`` holds JSON: split, class_names, embedding_dim, normalized,
encoder. Read with ``read_embeddings(uri, split)`` here, or with any Parquet reader:
``pandas.read_parquet(path)``, ``pyarrow.parquet.read_table(path)``,
``pyarrow.dataset.dataset(dir)``.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simclr import storage
from simclr.errors import UserError

EMBEDDING = "embedding"
METADATA_KEY = b"simclr"
SUFFIX = ".parquet"
SHARD_TARGET_BYTES = 128 << 20  # like the TFRecord shards (simclr.images.manifest)


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}{SUFFIX}"


def rows_per_shard(embedding_dim: int, requested: int | None = None) -> int:
    """``requested`` when given (> 0), else about SHARD_TARGET_BYTES of float32 a shard."""
    if requested:
        return int(requested)
    return max(1, SHARD_TARGET_BYTES // (4 * max(1, embedding_dim)))


def num_shards(num_rows: int, per_shard: int) -> int:
    return max(1, math.ceil(num_rows / per_shard))


def schema(embedding_dim: int, metadata: dict[str, Any]):
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("path", pa.string()),
            pa.field("label", pa.int64()),
            pa.field(EMBEDDING, pa.list_(pa.float32(), embedding_dim), nullable=False),
        ],
        metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()},
    )


def to_table(
    ids: np.ndarray,
    embeddings: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    paths: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
):
    """A pyarrow Table of rows; labels < 0 (unlabelled) become null."""
    import pyarrow as pa

    embeddings = np.ascontiguousarray(embeddings, np.float32)
    n, dim = embeddings.shape
    label_array = None
    if labels is not None:
        labels = np.asarray(labels, np.int64)
        label_array = pa.array(labels, pa.int64(), mask=labels < 0)
    columns = [
        pa.array(np.asarray(ids, np.int64), pa.int64()),
        pa.array(paths if paths is not None else [None] * n, pa.string()),
        label_array if label_array is not None else pa.nulls(n, pa.int64()),
        pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1), pa.float32()), dim),
    ]
    return pa.Table.from_arrays(columns, schema=schema(dim, metadata or {}))


def write_table(table, path: str) -> None:
    """One local Parquet file."""
    import pyarrow.parquet as pq

    pq.write_table(table, path, compression="zstd")


@dataclass
class Embeddings:
    """What ``read_embeddings`` returns (numpy; rows in id order)."""

    ids: np.ndarray
    embeddings: np.ndarray  # float32 [N, D]
    labels: np.ndarray  # int64 [N], -1 where null
    paths: list[str | None]
    metadata: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def list_shards(uri: str, split: str | None = None) -> list[str]:
    """Relative names of the Parquet files under ``uri`` (of ``split``), sorted."""
    names = [n for n in storage.list_files(uri) if n.endswith(SUFFIX) and "/" not in n]
    if split is not None:
        names = [n for n in names if n.startswith(f"{split}-")]
    return sorted(names)


def read_embeddings(uri: str, split: str | None = None) -> Embeddings:
    """All shards of ``split`` (or every Parquet file) under ``uri``; UserError if none."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = list_shards(uri, split)
    if not names:
        raise UserError(f"no {split + ' ' if split else ''}embeddings (*{SUFFIX}) at {uri}")
    tables = []
    for name in names:
        blob = storage.read_bytes(storage.join(uri, name))
        try:
            tables.append(pq.read_table(io.BytesIO(blob)))
        except (pa.ArrowException, OSError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise UserError(
                f"{storage.join(uri, name)}: not a readable Parquet file: {reason}"
            ) from None
    table = pa.concat_tables(tables)
    dim = table.schema.field(EMBEDDING).type.list_size
    flat = table.column(EMBEDDING).combine_chunks().flatten().to_numpy(zero_copy_only=False)
    labels = table.column("label").fill_null(-1).to_numpy().astype(np.int64)
    meta = json.loads((tables[0].schema.metadata or {}).get(METADATA_KEY, b"{}"))
    return Embeddings(
        ids=table.column("id").to_numpy(),
        embeddings=flat.reshape(-1, dim).astype(np.float32, copy=False),
        labels=labels,
        paths=table.column("path").to_pylist(),
        metadata=meta,
        files=names,
    )


class ShardedWriter:
    """Writes one split's rows to ``directory`` as shards of ``per_shard`` rows, in order.

    ``total`` rows are expected (the shard count is in every name); ``add`` takes
    batches; ``close`` checks the count and returns the file names written.
    """

    def __init__(
        self, directory: str, split: str, total: int, per_shard: int, metadata: dict[str, Any]
    ) -> None:
        self.directory, self.split, self.total = directory, split, int(total)
        self.per_shard = int(per_shard)
        self.count = num_shards(self.total, self.per_shard)
        self.metadata = metadata
        self.files: list[str] = []
        self.rows = 0
        self._buffer: list[dict[str, Any]] = []
        self._buffered = 0

    @property
    def added(self) -> int:
        """Rows added so far (written or buffered): the next row's id."""
        return self.rows + self._buffered

    def add(self, ids, embeddings, labels=None, paths=None) -> None:
        self._buffer.append({"ids": ids, "emb": embeddings, "labels": labels, "paths": paths})
        self._buffered += len(ids)
        while self._buffered >= self.per_shard:
            self._flush(self.per_shard)

    def _flush(self, n: int) -> None:
        parts = _take(self._buffer, n)
        self._buffered -= n
        table = to_table(
            np.concatenate([p["ids"] for p in parts]),
            np.concatenate([p["emb"] for p in parts]),
            labels=None
            if parts[0]["labels"] is None
            else np.concatenate([p["labels"] for p in parts]),
            paths=None if parts[0]["paths"] is None else sum((list(p["paths"]) for p in parts), []),
            metadata=self.metadata,
        )
        name = shard_name(self.split, len(self.files), self.count)
        write_table(table, os.path.join(self.directory, name))
        self.files.append(name)
        self.rows += n

    def close(self) -> list[str]:
        if self._buffered:
            self._flush(self._buffered)
        if self.rows != self.total or len(self.files) != self.count:
            raise UserError(
                f"split {self.split!r}: {self.rows} embeddings written, expected {self.total}"
            )
        return self.files


def _take(buffer: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Pops the first ``n`` rows off a buffer of batches (splitting one if needed)."""
    taken, need = [], n
    while need:
        part = buffer[0]
        size = len(part["ids"])
        if size <= need:
            taken.append(buffer.pop(0))
            need -= size
            continue
        head = {k: (v[:need] if v is not None else None) for k, v in part.items()}
        buffer[0] = {k: (v[need:] if v is not None else None) for k, v in part.items()}
        taken.append(head)
        need = 0
    return taken
