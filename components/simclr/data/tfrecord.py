"""TFRecord files through TensorFlow: parsing Examples (one, or a batch
inside tf.data), the fallback reader for records not in our fixed layout, and reading
an image dataset's shard decoded to its centre crops."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from simclr.data.manifest import image_size
from simclr.data.records import IMAGE_SHAPE
from simclr.errors import UserError
from simclr.export import decode_images
from simclr.images.parsing import parse_features


def parse_example(serialized: Any) -> tuple[Any, Any]:
    """A serialized Example -> (image uint8 [32,32,3], label int64). Works inside tf.data."""
    features = tf.io.parse_single_example(
        serialized,
        {
            "image": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64),
        },
    )
    image = tf.reshape(tf.io.decode_raw(features["image"], tf.uint8), IMAGE_SHAPE)
    return image, features["label"]


def _parse_batch(serialized: Any) -> tuple[Any, Any]:
    features = tf.io.parse_example(
        serialized,
        {
            "image": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64),
        },
    )
    images = tf.reshape(tf.io.decode_raw(features["image"], tf.uint8), (-1, *IMAGE_SHAPE))
    return images, features["label"]


def _read_record_file_tf(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Fallback for records not in our fixed layout: batched TF parsing."""
    images, labels = [], []
    try:
        for batch in tf.data.TFRecordDataset(path).batch(4096).map(_parse_batch):
            images.append(batch[0].numpy())
            labels.append(batch[1].numpy())
    except tf.errors.OpError as err:
        raise UserError(f"{path}: corrupt TFRecord file: {err.message.splitlines()[0]}") from None
    if not images:
        return np.zeros((0, *IMAGE_SHAPE), np.uint8), np.zeros((0,), np.int64)
    return np.concatenate(images), np.concatenate(labels)


def _decode_centre(manifest: dict[str, Any]):
    """serialized [N] -> (uint8 [N, S, S, 3] centre crops, labels): evaluation's view of
    stored pictures (`simclr.export.decode_images`; their shorter side is already
    stored_size, so no resize)."""
    size, stored = image_size(manifest), int(manifest["stored_size"])

    def parse(serialized):
        example = tf.io.parse_example(serialized, parse_features())
        return decode_images(example["image"], size, stored), example["label"]

    return parse


def read_image_file(path: str, manifest: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """One local shard of an image dataset -> (uint8 [N, S, S, 3], int64 [N] (-1: no label))."""
    size = image_size(manifest)
    images, labels = [], []
    dataset = (
        tf.data.TFRecordDataset(path)
        .batch(256)
        .map(_decode_centre(manifest), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    )
    try:
        for x, y in dataset:
            images.append(x.numpy())
            labels.append(y.numpy())
    except tf.errors.OpError as err:
        raise UserError(f"{path}: corrupt TFRecord file: {err.message.splitlines()[0]}") from None
    if not images:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros((0,), np.int64)
    return np.concatenate(images), np.concatenate(labels)
