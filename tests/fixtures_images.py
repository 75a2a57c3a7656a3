"""Real pictures for the image-ingest tests, and every kind of bad file, made here.

- `cifar_jpegs()`: the first 3,000 training images of ../shared/data/cifar10-jpeg.tar.gz
  (real CIFAR-10 JPEG files, ~300 per class) with their labels; read once per process.
- `skimage_photos()`: the photographs scikit-image bundles (skimage/data), 102-1411 px.
- `write_class_folders`, `write_flat_folder`, `write_csv_list`, `write_jsonl_list`: lay
  them out as a source.
- `bad_files()`: name -> (bytes, expected BadImage kind) for every bad-file kind.
- `png16(array)`: a 16-bit PNG written by hand (Pillow cannot write 16-bit RGB).
- `jpeg_with_orientation(image, orientation)`: a JPEG carrying an EXIF orientation tag.

Import the fixtures into a test module with `from tests.fixtures_images import *`.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"
CIFAR_JPEG_TAR = SHARED_DIR / "data" / "cifar10-jpeg.tar.gz"
NUM_CIFAR = 3000

__all__ = [
    "CifarJpegs",
    "bad_files",
    "cifar_jpegs",
    "jpeg_bytes",
    "jpeg_with_orientation",
    "png16",
    "png_bytes",
    "skimage_photos",
    "write_class_folders",
    "write_csv_list",
    "write_flat_folder",
    "write_jsonl_list",
]


@dataclass(frozen=True)
class CifarJpegs:
    classes: list[str]
    files: list[tuple[int, int, bytes]]  # (train index, label, JPEG bytes)

    def per_class(self, count: int, skip: int = 0) -> list[tuple[int, int, bytes]]:
        """The first `count` images of every class (in index order) after the first
        `skip` images (which another folder of the same test holds)."""
        taken: dict[int, int] = {}
        out = []
        for index, label, data in self.files[skip:]:
            if taken.get(label, 0) < count:
                taken[label] = taken.get(label, 0) + 1
                out.append((index, label, data))
        assert all(taken.get(c, 0) == count for c in range(10)), taken
        return out


@functools.cache
def cifar_jpegs() -> CifarJpegs:
    assert CIFAR_JPEG_TAR.is_file(), CIFAR_JPEG_TAR
    jpegs: dict[int, bytes] = {}
    labels = classes = None
    with tarfile.open(CIFAR_JPEG_TAR, "r:gz") as tar:
        for member in tar:
            name = member.name
            if "/train/" in name and name.endswith(".jpg"):
                index = int(os.path.basename(name)[:-4])
                if index < NUM_CIFAR:
                    jpegs[index] = tar.extractfile(member).read()
            elif name.endswith("train_labels.txt"):
                labels = [int(v) for v in tar.extractfile(member).read().split()]
            elif name.endswith("classes.txt"):
                classes = tar.extractfile(member).read().decode().split()
    assert labels and classes and len(jpegs) == NUM_CIFAR
    return CifarJpegs(classes, [(i, labels[i], jpegs[i]) for i in range(NUM_CIFAR)])


def skimage_photos() -> dict[str, Path]:
    """name -> path of the RGB/grey/RGBA photographs in skimage/data (PNG and JPEG)."""
    import skimage

    root = Path(skimage.__file__).parent / "data"
    names = [
        "astronaut.png", "chelsea.png", "coffee.png", "retina.jpg", "rocket.jpg",
        "hubble_deep_field.jpg", "motorcycle_left.png", "camera.png", "horse.png",
        "logo.png", "microaneurysms.png", "page.png", "ihc.png",
    ]  # fmt: skip
    photos = {name: root / name for name in names}
    assert all(p.is_file() for p in photos.values()), root
    return photos


def write_class_folders(root: Path, images, classes: list[str]) -> dict[str, int]:
    """root/<class>/<index>.jpg; returns relative path -> label."""
    out = {}
    for index, label, data in images:
        rel = f"{classes[label]}/{index:05d}.jpg"
        (root / classes[label]).mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        out[rel] = label
    return out


def write_flat_folder(root: Path, images) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    rels = []
    for index, _label, data in images:
        (root / f"{index:05d}.jpg").write_bytes(data)
        rels.append(f"{index:05d}.jpg")
    return rels


def write_csv_list(path: Path, rows: list[tuple[str, str | None]], header: bool = True) -> Path:
    lines = ["path,label"] if header else []
    lines += [p if label is None else f"{p},{label}" for p, label in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_jsonl_list(path: Path, rows: list[tuple[str, object]]) -> Path:
    import json

    path.write_text(
        "".join(
            json.dumps({"path": p} if label is None else {"path": p, "label": label}) + "\n"
            for p, label in rows
        )
    )
    return path


def png_bytes(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **params)
    return buffer.getvalue()


def jpeg_bytes(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **params)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG of uint16 [H, W] (grey) or [H, W, 3] (RGB), written by hand."""
    array = np.asarray(array, np.uint16)
    height, width = array.shape[:2]
    colour_type = 2 if array.ndim == 3 else 0
    rows = array.reshape(height, -1).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height (8-bit RGB) and holds one tiny IDAT."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def jpeg_with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg_bytes(image, quality=95, exif=exif)


def bad_files() -> dict[str, tuple[bytes, str]]:
    """file name -> (bytes, the BadImage kind the ingest must report)."""
    photo = Image.open(skimage_photos()["chelsea.png"]).convert("RGB")
    whole = jpeg_bytes(photo, quality=90)
    return {
        "empty.jpg": (b"", "empty"),
        "notes.jpg": (b"These are my holiday notes, not a picture.\n" * 20, "not_image"),
        "animation.png": (_gif_bytes(), "not_image"),  # a GIF named .png
        "truncated.jpg": (whole[: len(whole) // 2], "truncated"),
        "bomb.png": (png_header_only(200_000, 200_000), "too_large"),
    }


def _gif_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("P", (8, 8)).save(buffer, "GIF")
    return buffer.getvalue()
