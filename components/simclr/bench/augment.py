"""Benchmark: batched augmentation (`augment_pair`, XLA) vs a per-image `tf.data` map.

Both apply the same policy (SimCLR's CIFAR-10 defaults) to the same in-memory uint8
images and are counted in pairs of views per second. The batched figure is one
compiled call per batch on a batch already on the device (as in the training step);
the per-image figure is `augment_image` twice per element in a parallel `tf.data` map,
batched (as a reference-style input pipeline feeds the step).

On a GPU, augmentation should cost under 5% of a ResNet-50 training step. Check: the
pretraining benchmark gives the step's images/s at the same batch size; the cost
fraction is `pretrain_images_per_second / augment_batched_images_per_second` (the
augmentation runs inside the step, so also confirm with the TensorBoard profiler's
trace of one step: the time under the augment ops / the step time).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from simclr.augment import AugmentPolicy
from simclr.augment.ops import augment_pair
from simclr.augment.reference import augment_image

DEFAULT_BATCH = 256


def device_name() -> str:
    """The accelerator TensorFlow uses ('GPU: <name>') or 'CPU (<n> cores)'."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', gpus[0].name)} x{len(gpus)}"
    return f"CPU ({os.cpu_count()} cores)"


def synthetic_images(count: int, seed: int = 0) -> np.ndarray:
    """Random uint8 [count,32,32,3] images (augmentation cost does not depend on content)."""
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def _batch_of(images: np.ndarray, batch_size: int) -> np.ndarray:
    reps = -(-batch_size // len(images))
    return np.concatenate([images] * reps)[:batch_size]


def batched_runner(images: np.ndarray, policy: Any, batch_size: int, jit_compile: bool = True):
    """A warmed-up callable(seconds) -> pairs/s of `augment_pair` in a compiled function."""
    batch = tf.constant(_batch_of(images, batch_size))
    step = tf.function(lambda x, s: augment_pair(x, policy, s), jit_compile=jit_compile)
    for warmup in range(2):  # compile, then one run at steady state
        step(batch, tf.constant(warmup))[0].numpy()
    seeds = iter(range(2, 2**31))

    def measure(seconds: float) -> float:
        calls, start = 0, time.perf_counter()
        while calls < 3 or time.perf_counter() - start < seconds:
            views = step(batch, tf.constant(next(seeds)))
            calls += 1
            if calls % 8 == 0:
                views[0][0, 0, 0, 0].numpy()  # keep an asynchronous device from running ahead
        views[0][0, 0, 0, 0].numpy()
        return calls * batch_size / (time.perf_counter() - start)

    return measure


def per_image_dataset(images: np.ndarray, policy: Any, batch_size: int, seed: int = 0):
    """A tf.data pipeline of batched (view_a, view_b) made by a per-image map."""

    def pair(index, image):
        key = tf.stack([tf.constant(seed, tf.int64), index])
        return augment_image(image, policy, key), augment_image(image, policy, key + [0, 1 << 40])

    return (
        tf.data.Dataset.from_tensor_slices(images)
        .repeat()
        .enumerate()
        .map(pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def per_image_runner(images: np.ndarray, policy: Any, batch_size: int):
    """A warmed-up callable(seconds) -> pairs/s of a parallel per-image `tf.data` map."""
    batches = iter(per_image_dataset(images, policy, batch_size))
    for _ in range(2):  # trace, fill the prefetch buffer
        next(batches)

    def measure(seconds: float) -> float:
        count, start = 0, time.perf_counter()
        while count < 3 or time.perf_counter() - start < seconds:
            next(batches)
            count += 1
        return count * batch_size / (time.perf_counter() - start)

    return measure


def compare(
    images: np.ndarray, policy: Any, batch_size: int = DEFAULT_BATCH, seconds: float = 3.0
) -> dict[str, Any]:
    """Both figures (pairs/s), their ratio and where they were measured.

    The two are measured in alternating rounds and each keeps its best round, so that
    load from other processes on a shared machine skews the ratio less.
    """
    batched, per_image = (
        batched_runner(images, policy, batch_size),
        per_image_runner(images, policy, batch_size),
    )
    rounds = 3
    batched_rates, per_image_rates = [], []
    for _ in range(rounds):
        batched_rates.append(batched(seconds / rounds))
        per_image_rates.append(per_image(seconds / rounds))
    batched, per_image = max(batched_rates), max(per_image_rates)
    return {
        "images_per_second": round(batched, 1),
        "per_image_map_images_per_second": round(per_image, 1),
        "speedup": round(batched / per_image, 2),
        "batch_size": batch_size,
        "device": device_name(),
        "unit": "pairs/s",
    }


def benchmarks(args: Any) -> Iterator[dict[str, Any]]:
    quick = getattr(args, "quick", False)
    batch_size = DEFAULT_BATCH
    result = compare(synthetic_images(1024), AugmentPolicy(), batch_size, 1.0 if quick else 5.0)
    common = {"batch_size": batch_size, "device": result["device"], "policy": "simclr_cifar10"}
    yield {
        "name": "augment_batched_images_per_second",
        "value": result["images_per_second"],
        "unit": "pairs/s",
        **common,
    }
    yield {
        "name": "augment_per_image_map_images_per_second",
        "value": result["per_image_map_images_per_second"],
        "unit": "pairs/s",
        **common,
    }
    yield {"name": "augment_batched_speedup", "value": result["speedup"], "unit": "x", **common}
