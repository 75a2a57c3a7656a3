"""Benchmark: the pretraining input pipeline from stored JPEG records, against a plain
per-image Pillow loader, at 96 and 224 px.

Both take the same stored pictures (scikit-image's photographs ingested at the size:
shorter side 110 / 256 px, JPEG, held in memory so no file I/O is timed) and produce
what SimCLR consumes: two random resized crops of each image (area 0.08-1, aspect
3/4-4/3), flipped, uint8 at the training size.

- ours: the host half of `train_input.make_input`: `simclr.data.crop_windows` in a parallel,
  deterministic tf.data map over the encoded records (one decode, two boxes, two cuts),
  batched by `data.batch_crop_windows` (zero-padded canvases). The bicubic resize is the
  device's, batched in the training step (`augment.augment_windows`); a separate row
  times it on this machine's CPU;
- Pillow: what a torchvision `ImageFolder` + `RandomResizedCrop` + `RandomHorizontalFlip`
  loader does per image (`Image.open(...).convert("RGB")`, torchvision's box sampling,
  `Image.resize(size, BILINEAR, box=crop)`, flip, `np.asarray`), one image at a time.

Each row: images/s (pairs of views) and images per CPU-second (process CPU time over
all threads: the per-core figure, comparable however many cores tf.data used). Per
size, a row times the device half (the batched resize of both views from their
canvases) on this machine's CPU, and a last row the JPEG decode alone in the same map:
decoding dominates both loaders, so its per-core rate over the Pillow loader's bounds
the speedup any loader that decodes whole pictures can reach.
"""

from __future__ import annotations

import io
import math
import os
import random
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from simclr import data
from simclr.augment import default_policy
from simclr.augment.crop import crop_resize
from simclr.bench.ingest import write_photo_folder
from simclr.images import IngestOptions, ingest

SIZES = (96, 224)
# What a GPU step consumes at 224 px: ResNet-50 v1.5 training on one A100 40GB, mixed
# precision + XLA, batch 256: 2,375 images/s (NVIDIA/DeepLearningExamples,
# TensorFlow/Classification/ConvNets/resnet50v1.5/README.md, "Training performance:
# NVIDIA DGX A100"). A SimCLR step runs the encoder on two views of each image, so it
# takes about half as many images (pairs) per second.
A100_RESNET50_TRAIN_VIEWS_PER_SECOND = 2375
GPU_STEP_PAIRS_PER_SECOND_224 = A100_RESNET50_TRAIN_VIEWS_PER_SECOND / 2


def _stored_records(work: str, image_size: int, count: int) -> tuple[str, list[bytes]]:
    photos = os.path.join(work, "photos")
    if not os.path.isdir(photos):
        write_photo_folder(photos, count=count)
    out = os.path.join(work, f"data-{image_size}")
    ingest(photos, out, IngestOptions(image_size=image_size, test_fraction=0.0))
    encoded = [bytes(e.numpy()) for e, _, _ in data.encoded_records(out, "train")]
    return out, encoded


def _cut_batches(data_dir: str, image_size: int, batch_size: int = 64) -> Any:
    """The training input of an image dataset as `train_input.make_input` builds it: crops
    cut per picture in a parallel, deterministic map, padded into batches."""
    policy = default_policy(image_size)
    canvas = data.crop_canvas(int(data.load_manifest(data_dir)["stored_size"]), policy)
    records = data.encoded_records(data_dir, "train").cache().repeat()
    # Seeds made a batch at a time, as make_input does (per step), not one map per image.
    seeds = tf.data.Dataset.range(1 << 40).batch(1024)
    seeds = seeds.map(lambda i: tf.stack([tf.zeros_like(i), i], 1)).unbatch()
    crops = tf.data.Dataset.zip(records, seeds).map(
        lambda record, seed: data.crop_windows(*record, seed, policy, canvas),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return data.batch_crop_windows(crops, batch_size, canvas).prefetch(2)


def measure_ours(data_dir: str, image_size: int, seconds: float) -> dict[str, Any]:
    batches = iter(_cut_batches(data_dir, image_size))
    for _ in range(3):  # warm up: tracing, the cache's first pass
        next(batches)
    return _timed(lambda: int(next(batches)["sizes"].shape[0]), seconds)


def measure_device_resize(data_dir: str, image_size: int, seconds: float) -> dict[str, Any]:
    """The device half on this machine's CPU: both views of a batch resized from their
    canvases (`augment.crop_resize`, as `augment_windows` runs it), as a tf.function."""
    batch = next(iter(_cut_batches(data_dir, image_size)))

    @tf.function
    def resize(batch):
        zero = tf.zeros_like(batch["sizes"][:, 0, 0])
        return [
            crop_resize(
                batch["crops"][k],
                (zero, zero, batch["sizes"][:, k, 0], batch["sizes"][:, k, 1]),
                batch["flips"][:, k],
                size=image_size,
            )
            for k in range(2)
        ]

    resize(batch)
    return _timed(lambda: int(resize(batch)[0].shape[0]), seconds)


def measure_decode_only(data_dir: str, seconds: float) -> dict[str, Any]:
    """The JPEG decode alone, in the same parallel map: the ceiling of any loader that
    decodes every stored picture whole (ours and Pillow's both use libjpeg-turbo)."""

    def decode(encoded, height, width):
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        return tf.reduce_max(image)  # a scalar, so batching needs no common shape

    records = data.encoded_records(data_dir, "train").cache().repeat()
    ds = records.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    batches = iter(ds.batch(64).prefetch(2))
    for _ in range(3):
        next(batches)
    return _timed(lambda: next(batches).shape[0], seconds)


def _canvas(data_dir: str, image_size: int) -> int:
    stored = int(data.load_manifest(data_dir)["stored_size"])
    return data.crop_canvas(stored, default_policy(image_size))


def _torchvision_box(width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
    """torchvision.transforms.RandomResizedCrop.get_params (v0.17): (top, left, h, w)."""
    area = width * height
    log_ratio = (math.log(3 / 4), math.log(4 / 3))
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    side = min(width, height)  # fallback: central crop (torchvision's, ratio clamped)
    return (height - side) // 2, (width - side) // 2, side, side


def measure_pillow(encoded: list[bytes], image_size: int, seconds: float) -> dict[str, Any]:
    from PIL import Image

    rng = random.Random(0)
    index = [0]

    def one_image() -> int:
        data = encoded[index[0] % len(encoded)]
        index[0] += 1
        image = Image.open(io.BytesIO(data)).convert("RGB")
        views = []
        for _ in range(2):
            top, left, h, w = _torchvision_box(image.width, image.height, rng)
            view = image.resize(
                (image_size, image_size),
                Image.Resampling.BILINEAR,
                box=(left, top, left + w, top + h),
            )
            if rng.random() < 0.5:
                view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            views.append(np.asarray(view))
        return 1 if np.stack(views).shape[0] == 2 else 0

    for _ in range(8):
        one_image()
    return _timed(one_image, seconds)


def _gpu_feed(ours: dict[str, Any]) -> dict[str, Any]:
    """16 cores at our per-core rate against one A100's SimCLR ResNet-50 step at 224 px."""
    sixteen = 16 * (ours["images_per_cpu_second"] or 0)
    return {
        "gpu_step_images_per_second": round(GPU_STEP_PAIRS_PER_SECOND_224),
        "headroom_16_cores_vs_gpu_step": round(sixteen / GPU_STEP_PAIRS_PER_SECOND_224, 1),
    }


def _timed(step, seconds: float) -> dict[str, Any]:
    images, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        images += step()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "value": round(images / wall, 1),
        "unit": "images/s",
        "images_per_cpu_second": round(images / cpu, 1) if cpu > 0 else None,
        "cpu_cores_used": round(cpu / wall, 2),
    }


def benchmarks(args: Any) -> Iterator[dict[str, Any]]:
    quick = bool(getattr(args, "quick", False))
    seconds = 2.0 if quick else 8.0
    with tempfile.TemporaryDirectory(prefix="simclr-bench-input-") as work:
        for size in SIZES:
            data_dir, encoded = _stored_records(work, size, 40 if quick else 120)
            ours = measure_ours(data_dir, size, seconds)
            pillow = measure_pillow(encoded, size, seconds)
            decode = measure_decode_only(data_dir, seconds)
            device = measure_device_resize(data_dir, size, seconds)
            per_core = (ours["images_per_cpu_second"] or 0) / max(
                1e-9, pillow["images_per_cpu_second"] or 0
            )
            common = {"image_size": size, "views_per_image": 2, "stored_format": "jpeg"}
            yield {"name": f"input_pipeline_{size}px_images_per_second", **common, **ours}
            yield {"name": f"input_pillow_loader_{size}px_images_per_second", **common, **pillow}
            yield {
                "name": f"input_pipeline_{size}px_per_core_speedup_vs_pillow",
                "value": round(per_core, 2),
                "unit": "x",
                **common,
                # what 16 cores of this machine would feed at this rate
                "images_per_second_16_cores": round(16 * (ours["images_per_cpu_second"] or 0)),
                **(_gpu_feed(ours) if size == 224 else {}),
            }
            yield {
                "name": f"input_device_resize_{size}px_images_per_second",
                **common,
                **device,
                "device": "this machine's CPU, no XLA (as the CPU training step)",
                "canvas": _canvas(data_dir, size),
            }
            # Decoding alone, per core, over the whole Pillow loader's rate: no loader that
            # decodes each stored JPEG whole can beat this ratio.
            yield {
                "name": f"input_decode_only_{size}px_per_core_ceiling_vs_pillow",
                "value": round(
                    (decode["images_per_cpu_second"] or 0)
                    / max(1e-9, pillow["images_per_cpu_second"] or 0),
                    2,
                ),
                "unit": "x",
                "decode_images_per_cpu_second": decode["images_per_cpu_second"],
                **common,
            }
