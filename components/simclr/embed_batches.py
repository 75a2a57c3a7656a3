"""The embed task's TensorFlow half: a split's images in batches (decoded and
centre-cropped as the SavedModel would), and their L2-normalised embeddings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from simclr import data
from simclr.errors import UserError
from simclr.evaluate import extract_features, l2_normalize
from simclr.export import decode_images
from simclr.images.parsing import parse_features


def split_batches(
    local_dir: str, manifest: dict[str, Any], split: str, batch_size: int, image_size: int
) -> Iterator[tuple]:
    """(uint8 [B,S,S,3], labels, paths or None) per batch of `split`, in record order."""
    if manifest["format_version"] == data.FORMAT_VERSION:
        return _batches_v1(local_dir, manifest, split, batch_size)
    return _batches_v2(local_dir, manifest, split, batch_size, image_size)


def _files(local_dir: str, manifest: dict[str, Any], split: str) -> list[str]:
    return data.verified_files(local_dir, manifest, split, local_dir)


def _batches_v1(local_dir, manifest, split, batch_size) -> Iterator[tuple]:
    """(uint8 [B,32,32,3], labels, None) per batch, file by file (bounded memory)."""
    for path in _files(local_dir, manifest, split):
        images, labels = data.read_record_file(path)
        for start in range(0, len(labels), batch_size):
            yield images[start : start + batch_size], labels[start : start + batch_size], None


def _batches_v2(local_dir, manifest, split, batch_size, image_size) -> Iterator[tuple]:
    """(uint8 [B,S,S,3], labels, paths) per batch: decoded and centre-cropped."""
    stored = int(manifest.get("stored_size") or 0) or None

    def parse(serialized):
        example = tf.io.parse_example(serialized, parse_features())
        pixels = decode_images(example["image"], image_size, stored)
        return pixels, example["label"], example["path"]

    dataset = (
        tf.data.TFRecordDataset(_files(local_dir, manifest, split))
        .batch(batch_size)
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(2)
    )
    try:
        for pixels, labels, paths in dataset:
            yield pixels.numpy(), labels.numpy(), [p.decode("utf-8") for p in paths.numpy()]
    except tf.errors.OpError as err:
        reason = err.message.splitlines()[0]
        raise UserError(f"split {split!r}: unreadable record: {reason}") from None


def embed_batch(model: Any, images: np.ndarray, ids: np.ndarray, split: str) -> np.ndarray:
    """L2-normalised float32 embeddings of `images`; refuses non-finite ones."""
    features = extract_features(model, images, len(images))
    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        raise UserError(
            f"the encoder gave non-finite embeddings for {int(bad.sum())} {split} images "
            f"(first id {int(ids[bad][0])}); nothing was written"
        )
    return l2_normalize(features).astype(np.float32)
