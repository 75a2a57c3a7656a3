"""Class counts and the class-balanced labelled subsets of the training split
(`label_0.01.tfrecord`, ...): their draw, manifest key and checksum."""

from __future__ import annotations

import hashlib

import numpy as np

from simclr.errors import UserError


def subset_name(fraction: float) -> str:
    """The manifest key of a label subset: 0.01 -> "0.01", 1.0 -> "1"."""
    return f"{fraction:g}"


def class_counts(labels: np.ndarray, num_classes: int = 10) -> list[int]:
    return [int(c) for c in np.bincount(labels, minlength=num_classes)]


def balanced_subset(
    labels: np.ndarray, fraction: float, seed: int, num_classes: int = 10
) -> np.ndarray:
    """Sorted indices of a class-balanced subset: the same count for every class.

    Per class: round(fraction * len(labels) / num_classes), at least 1 and at most the
    smallest class. The draw depends only on (seed, fraction), not on other fractions.
    """
    smallest = min(class_counts(labels, num_classes))
    if smallest < 1:
        raise UserError(
            f"cannot draw a class-balanced subset: a class has no training image ({class_counts(labels)})"
        )
    per_class = min(max(1, round(fraction * len(labels) / num_classes)), smallest)
    fraction_key = int(round(fraction * 1_000_000))
    rng = np.random.default_rng([seed, fraction_key])
    chosen = [
        rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
        for c in range(num_classes)
    ]
    return np.sort(np.concatenate(chosen))


def indices_sha256(indices: np.ndarray) -> str:
    """Checksum of a subset's indices (int64 little-endian, sorted)."""
    return hashlib.sha256(np.asarray(indices, "<i8").tobytes()).hexdigest()
