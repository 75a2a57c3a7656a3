"""Benchmark: image ingest throughput (images/s, and per core) on real pictures.

- CIFAR-10: the 50,000 training JPEGs of ../shared/data/cifar10-jpeg.tar.gz laid out as
  class folders, ingested at 32 px (stored as PNG, lossless);
- photos: scikit-image's bundled photographs upscaled to 1,600-2,400 px on the long side
  and saved as distinct JPEGs (a few hundred, like a folder of camera pictures),
  ingested at 224 px (stored at 256 px as JPEG).

Each row gives images/s, the worker processes, and images per CPU-second (parent and
workers together), which compares across machines and shared CPUs better than the
wall-clock rate.
"""

from __future__ import annotations

import io
import os
import resource
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tensorflow  # noqa: F401  (loaded before timing: not part of the ingest's time)

from simclr.errors import UserError
from simclr.images import IngestOptions, ingest

_CIFAR_JPEG = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "retina.jpg", "rocket.jpg",
           "hubble_deep_field.jpg", "motorcycle_left.png", "ihc.png")  # fmt: skip


def write_cifar_folder(out_dir: str, limit: int | None = None, archive: Path = _CIFAR_JPEG) -> int:
    """The training JPEGs as out_dir/<class>/<index>.jpg; returns how many were written."""
    if not archive.is_file():
        raise UserError(f"{archive} is missing (the CIFAR-10 JPEG archive)")
    jpegs: dict[int, bytes] = {}
    labels = classes = None
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            name = member.name
            if "/train/" in name and name.endswith(".jpg"):
                index = int(os.path.basename(name)[:-4])
                if limit is None or index < limit:
                    jpegs[index] = tar.extractfile(member).read()
            elif name.endswith("train_labels.txt"):
                labels = [int(v) for v in tar.extractfile(member).read().split()]
            elif name.endswith("classes.txt"):
                classes = tar.extractfile(member).read().decode().split()
    if labels is None or classes is None:
        raise UserError(f"{archive}: no train_labels.txt / classes.txt")
    for index, data in jpegs.items():
        folder = os.path.join(out_dir, classes[labels[index]])
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{index:05d}.jpg"), "wb") as f:
            f.write(data)
    return len(jpegs)


def write_photo_folder(out_dir: str, count: int = 300) -> int:
    """`count` distinct large JPEGs made from scikit-image's photographs."""
    import skimage
    from PIL import Image

    root = Path(skimage.__file__).parent / "data"
    photos = [Image.open(root / name).convert("RGB") for name in _PHOTOS]
    os.makedirs(out_dir, exist_ok=True)
    for i in range(count):
        photo = photos[i % len(photos)]
        long_side = 1600 + (i * 37) % 800
        scale = long_side / max(photo.size)
        size = (round(photo.width * scale), round(photo.height * scale))
        buffer = io.BytesIO()
        photo.resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
        with open(os.path.join(out_dir, f"{i:04d}.jpg"), "wb") as f:
            f.write(buffer.getvalue())
    return count


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # joined workers
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure_ingest(
    source: str, out_dir: str, *, image_size: int, workers: int | None = None
) -> dict[str, Any]:
    """One ingest; its images/s, workers and images per CPU-second."""
    cpu_before = _cpu_seconds()
    run = ingest(source, out_dir, IngestOptions(image_size=image_size, workers=workers))
    cpu = _cpu_seconds() - cpu_before
    stats = run.stats
    return {
        "value": round(stats.images_per_second, 1),
        "unit": "images/s",
        "images": stats.images,
        "seconds": round(stats.seconds, 2),
        "workers": stats.workers,
        "worker_processes": stats.worker_processes,
        "images_per_second_per_worker": round(stats.images_per_second / max(1, stats.workers), 1),
        "images_per_cpu_second": round(stats.images / cpu, 1) if cpu > 0 else None,
        "image_size": image_size,
        "stored_size": run.manifest["stored_size"],
        "image_format": run.manifest["image_format"],
    }


def benchmarks(args: Any) -> Iterator[dict[str, Any]]:
    quick = bool(getattr(args, "quick", False))
    with tempfile.TemporaryDirectory(prefix="simclr-bench-ingest-") as work:
        cifar = os.path.join(work, "cifar")
        write_cifar_folder(cifar, limit=5000 if quick else None)
        row = measure_ingest(cifar, os.path.join(work, "cifar-out"), image_size=32)
        yield {"name": "ingest_cifar10_jpeg_images_per_second", **row}
        photos = os.path.join(work, "photos")
        write_photo_folder(photos, count=60 if quick else 300)
        row = measure_ingest(photos, os.path.join(work, "photos-out"), image_size=224)
        yield {"name": "ingest_photos_images_per_second", **row}
