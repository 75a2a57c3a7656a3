"""Reading an image dataset's records in TensorFlow: the `tf.io.parse_example` spec of
the fields `simclr.images.records` writes."""

from __future__ import annotations

from typing import Any

import tensorflow as tf


def parse_features() -> dict[str, Any]:
    """The `tf.io.parse_example` spec of a record."""
    return {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "width": tf.io.FixedLenFeature([], tf.int64),
        "path": tf.io.FixedLenFeature([], tf.string),
    }
