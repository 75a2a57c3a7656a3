"""What the evaluate task scores on: the dataset, its splits and label subsets, as arrays.

The dataset is prepare_data's output, or the labelled ``--eval_source`` dataset its
manifest names (``DIR/eval/``). Without a test split, a seeded tenth of train (at most
``MAX_HELD_OUT`` images) is held out as the queries. ``config`` is the evaluate task's
config (``data_dir``, ``seed``, ``max_train_examples``, ``max_test_examples``,
``label_fractions``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np

from simclr import data, storage
from simclr.errors import UserError
from simclr.evaluate import EvalData

_log = logging.getLogger(__name__)

MAX_HELD_OUT = 1000  # queries held out of train when a dataset has no test split


def evaluation_dataset(config: Any, manifest: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The dataset to score on: prepare_data's --eval_source dataset when it made one."""
    entry = manifest.get("evaluation")
    if not entry:
        return config, manifest
    name = entry.get("data_dir") if isinstance(entry, dict) else None
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
        raise UserError(f"{storage.join(config.data_dir, data.MANIFEST)}: corrupt evaluation entry")
    eval_dir = storage.join(config.data_dir, name)
    _log.info(
        "%s was prepared with --eval_source %s: evaluating on %s",
        config.data_dir,
        entry.get("source"),
        eval_dir,
    )
    return replace(config, data_dir=eval_dir), data.load_manifest(eval_dir)


def subset_keys(config: Any, manifest: dict[str, Any]) -> list[str]:
    """Manifest label_subsets keys to fine-tune on (``config.label_fractions``, default
    all), in increasing fraction."""
    available = {float(k): k for k in manifest.get("label_subsets", {})}
    wanted = [float(f) for f in config.label_fractions] or sorted(available)
    missing = [f"{f:g}" for f in wanted if f not in available]
    if missing or not wanted:
        have = ", ".join(sorted(available.values())) or "none"
        raise UserError(
            f"--label_fractions: {', '.join(missing) or 'no'} label subset in "
            f"{config.data_dir} (available: {have})"
        )
    return [available[f] for f in sorted(set(wanted))]


def load_split(
    config: Any,
    split: str,
    limit: int | None,
    num_classes: int,
    manifest: dict[str, Any] | None = None,
):
    """A split, or a seeded random subset of `limit` examples (not the first ones: a
    split may be stored grouped by class, e.g. the test split of the JPEG source).
    `num_classes` 0: unlabelled (labels are -1, not checked)."""
    images, labels = data.load_arrays(
        config.data_dir, split, int(limit) if limit else None, sample_seed=int(config.seed)
    )
    if len(labels) == 0:
        raise UserError(f"{config.data_dir}: split {split!r} is empty")
    bad = (labels < 0) | (labels >= num_classes)
    if num_classes and bad.any():
        raise UserError(
            f"{config.data_dir}: split {split!r} has labels outside [0, {num_classes}) "
            f"(e.g. {int(labels[bad][0])})"
        )
    return images, labels


def load_data(
    config: Any, manifest: dict[str, Any], subset_keys: list[str], labelled: bool
) -> EvalData:
    """Train, test (or held-out queries) and the label subsets `subset_keys`."""
    class_names = [str(c) for c in manifest.get("class_names", [])] if labelled else []
    if labelled and not class_names:
        raise UserError(f"{storage.join(config.data_dir, data.MANIFEST)}: no class_names")
    n = len(class_names)
    x_train, y_train = load_split(config, data.TRAIN, config.max_train_examples, n, manifest)
    if _has_split(manifest, data.TEST):
        x_test, y_test = load_split(config, data.TEST, config.max_test_examples, n, manifest)
    elif labelled:
        raise UserError(
            f"{config.data_dir}: no test split to score the protocols on "
            "(prepare it with --test_fraction > 0)"
        )
    else:
        x_train, y_train, x_test, y_test = _hold_out(x_train, y_train, config)
    subsets = {
        key: load_split(config, data.LABEL_PREFIX + key, config.max_train_examples, n, manifest)
        for key in subset_keys
    }
    return EvalData(class_names, x_train, y_train, x_test, y_test, subsets)


def _has_split(manifest: dict[str, Any], split: str) -> bool:
    return int(manifest["splits"].get(split, {}).get("num_examples", 0) or 0) > 0


def _hold_out(images: np.ndarray, labels: np.ndarray, config: Any):
    """(train, train labels, queries, query labels): a seeded tenth of train, at most
    MAX_HELD_OUT and at least 2, kept out of the bank (a query is not its own neighbour)."""
    count = min(MAX_HELD_OUT, max(2, len(labels) // 10))
    if len(labels) < count + 2:
        raise UserError(f"{config.data_dir}: too few images ({len(labels)}) to evaluate")
    held = np.zeros(len(labels), bool)
    held[np.random.default_rng(int(config.seed)).choice(len(labels), count, replace=False)] = True
    _log.info("no test split: %d train images held out as the queries", count)
    return images[~held], labels[~held], images[held], labels[held]
