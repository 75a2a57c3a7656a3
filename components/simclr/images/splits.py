"""Held-out test split, record order and label subsets, all from the seed.

- The test split is scikit-learn's `train_test_split` (stratified by class when
  labelled): `ceil(test_fraction * N)` images, each class in proportion
  (`StratifiedShuffleSplit`'s allocation), the same for the same seed and input.
- Both splits come out in a seeded shuffled order, which is the order of their records:
  a class-sorted folder must not become class-sorted shards (a reader taking "the first
  N" would see one class), as tensorflow/models' `build_imagenet_data.py` shuffles its
  file list "to guarantee random ordering of the images with respect to label in the
  saved TFRecord files" with a fixed seed.
- Label subsets are `simclr.data.balanced_subset` of the training split, as for CIFAR-10:
  the same count for every class.
"""

from __future__ import annotations

import math

import numpy as np

from simclr.errors import UserError


def split_order(
    labels: np.ndarray, num_classes: int, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices into `labels`, each in its record order.

    `num_classes` 0 means unlabelled (no stratification). `test_fraction` 0: no test split.
    """
    labels = np.asarray(labels, np.int64)
    count = len(labels)
    if test_fraction <= 0:
        return np.random.default_rng(seed).permutation(count), np.zeros(0, np.int64)
    num_test = math.ceil(test_fraction * count)
    num_train = count - num_test
    stratify = None
    if num_classes:
        counts = np.bincount(labels, minlength=num_classes)
        if counts.min() < 2:
            name = int(np.argmin(counts))
            raise UserError(
                f"--test_fraction {test_fraction:g}: class {name} has {counts.min()} usable "
                "image(s); a stratified test split needs at least 2 per class "
                "(add images or use --test_fraction=0)"
            )
        if num_test < num_classes or num_train < num_classes:
            raise UserError(
                f"--test_fraction {test_fraction:g} of {count} images gives {num_train} train "
                f"and {num_test} test images; each split needs at least one image of each "
                f"of the {num_classes} classes"
            )
        stratify = labels
    elif num_train < 1:
        raise UserError(f"--test_fraction {test_fraction:g} leaves no training image of {count}")
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        np.arange(count),
        test_size=test_fraction,
        random_state=seed,
        shuffle=True,
        stratify=stratify,
    )
    return np.asarray(train, np.int64), np.asarray(test, np.int64)


def class_counts(labels: np.ndarray, num_classes: int) -> list[int]:
    """Per-class counts ([] when unlabelled)."""
    if not num_classes:
        return []
    return [int(c) for c in np.bincount(np.asarray(labels, np.int64), minlength=num_classes)]


def label_subset(
    train_labels: np.ndarray, fraction: float, seed: int, num_classes: int
) -> np.ndarray:
    """Sorted positions in the training split of a class-balanced subset."""
    from simclr.data import balanced_subset

    counts = class_counts(train_labels, num_classes)
    if min(counts) < 1:
        raise UserError(
            f"--label_fractions {fraction:g}: class {counts.index(0)} has no training image "
            f"(train class counts {counts}); lower --test_fraction or add images"
        )

    return balanced_subset(np.asarray(train_labels, np.int64), fraction, seed, num_classes)
