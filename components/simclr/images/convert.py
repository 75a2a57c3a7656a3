"""One source file -> the encoded picture a record stores (what each worker process runs).

decode (decode.py) -> shorter side to `stored_size` (resize.py) -> encode as JPEG or PNG.
A JPEG that is already RGB, upright and at the stored size is kept byte for byte
(re-encoding it would only lose quality). Everything here is a pure function of the
input bytes and the spec, so the output is the same whichever process runs it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from simclr.images import resize
from simclr.images.decode import DEFAULT_MAX_IMAGE_PIXELS, BadImage, decode_rgb

IMAGE_FORMATS = ("jpeg", "png")
PNG_SIZE_LIMIT = 64  # at or below (stored side): lossless PNG by default, else JPEG


def default_image_format(stored_size: int) -> str:
    """png for small pictures (exact pixels; a few KB either way), jpeg above.

    At 64 px and below a PNG costs little more than a JPEG, decodes in microseconds and
    keeps the pixels exact (a CIFAR-sized folder then trains on what the archive holds).
    Above, JPEG is several times smaller and lets the input pipeline decode only the
    crop (`tf.image.decode_and_crop_jpeg`, as SimCLR's ImageNet input does).
    """
    return "png" if stored_size <= PNG_SIZE_LIMIT else "jpeg"


@dataclass(frozen=True)
class ConvertSpec:
    """How every picture is stored (pickled to the worker processes with each batch)."""

    stored_size: int
    image_format: str = "jpeg"
    jpeg_quality: int = 95
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class Converted:
    """An accepted picture: its encoded bytes and what was done to it."""

    data: bytes
    width: int
    height: int
    source_format: str  # Pillow's name: JPEG, PNG, WEBP, BMP
    source_mode: str  # Pillow mode before conversion: RGB, L, P, RGBA, CMYK, I;16, ...
    resized: str  # "down" | "up" | "none"
    rotated: bool  # an EXIF orientation other than 1 was applied
    passthrough: bool  # the source bytes are stored unchanged
    worker_pid: int  # which process converted it (run statistics only; not in any output)


@dataclass(frozen=True)
class Rejected:
    """A bad file: BadImage's kind and reason."""

    kind: str
    reason: str


def encode(image: Image.Image, spec: ConvertSpec) -> bytes:
    buffer = io.BytesIO()
    if spec.image_format == "jpeg":
        image.save(buffer, "JPEG", quality=spec.jpeg_quality)
    else:
        image.save(buffer, "PNG")
    return buffer.getvalue()


def stored_size_checked(upright: tuple[int, int], spec: ConvertSpec) -> tuple[int, int]:
    """The stored (width, height); BadImage when that would itself be a bomb.

    A 1x60,000 strip passes the source pixel limit, yet stored with its shorter side at
    256 it would be 256x15,360,000: the limit applies to the stored picture too.
    """
    stored = resize.stored_dimensions(*upright, spec.stored_size)
    pixels = stored[0] * stored[1]
    if pixels > spec.max_pixels:
        raise BadImage(
            "too_large",
            f"a {upright[0]}x{upright[1]} image stored with its shorter side at "
            f"{spec.stored_size} would be {stored[0]}x{stored[1]} = {pixels:,} pixels, "
            f"over the limit of {spec.max_pixels:,}",
        )
    if spec.image_format == "jpeg" and max(stored) > resize.JPEG_MAX_SIDE:
        raise BadImage(
            "too_large",
            f"stored as {stored[0]}x{stored[1]} it would exceed JPEG's "
            f"{resize.JPEG_MAX_SIDE:,} px side",
        )
    return stored


def convert_image(data: bytes, spec: ConvertSpec) -> Converted:
    """Bytes of one file -> Converted. Raises BadImage for a bad file; nothing else."""
    try:
        decoded = decode_rgb(
            data,
            spec.max_pixels,
            draft_for=lambda size: resize.draft_size(*size, spec.stored_size),
        )
        target = stored_size_checked(decoded.upright_size, spec)
        rotated = decoded.orientation != 1
        if (
            spec.image_format == "jpeg"
            and decoded.source_format == "JPEG"
            and decoded.source_mode == "RGB"
            and not rotated
            and decoded.image.size == target
        ):
            return Converted(
                data, *target, decoded.source_format, decoded.source_mode, "none", False, True,
                os.getpid(),
            )  # fmt: skip
        stored, how = resize.resize_to(decoded.image, target)
        encoded = encode(stored, spec)
    except BadImage:
        raise
    except MemoryError:
        raise BadImage("too_large", "out of memory while converting") from None
    except Exception as err:  # Pillow on a hostile file: report it, never crash the ingest
        line = (str(err).strip().splitlines() or [""])[0]
        raise BadImage("corrupt", f"{type(err).__name__}: {line}") from None
    return Converted(
        encoded, *target, decoded.source_format, decoded.source_mode, how, rotated, False,
        os.getpid(),
    )  # fmt: skip


def convert_batch(items: Sequence[bytes], spec: ConvertSpec) -> list[Converted | Rejected]:
    """The worker-process entry point: one result per item, in order."""
    results: list[Converted | Rejected] = []
    for data in items:
        try:
            results.append(convert_image(data, spec))
        except BadImage as bad:
            results.append(Rejected(bad.kind, bad.reason))
    return results
