"""Safe decoding of one image file into an RGB uint8 picture, with Pillow.

Every way a file can be bad ends as a `BadImage(kind, reason)`, never as another
exception: zero bytes, not an image (or a format other than JPEG/PNG/WebP/BMP),
truncated (the pixels are fully loaded, so a cut-off file is caught here and not in
training), corrupt, a decompression bomb (more pixels than the caller's limit, checked
from the header before any pixel is decoded), unreadable EXIF. Everything else is
converted to RGB:

- greyscale, bilevel, palette, CMYK, YCbCr: Pillow's conversion to RGB (no colour
  management: ICC profiles are not applied);
- anything with transparency (RGBA, LA, PA, a palette or tRNS transparency):
  composited over opaque white. Dropping alpha would expose whatever colour the
  transparent pixels happen to hold (often black, sometimes editing leftovers);
  white is how viewers and browsers show such images, and fixed, so it is deterministic;
- 16-bit greyscale (`I;16*`, `I`): scaled to 8 bits as round(v * 255 / 65535) (Pillow's
  own `convert("L")` clips at 255 instead); 16-bit RGB(A) PNGs Pillow already reduces
  to their high byte (v >> 8, at most one level from the exact scaling);
- EXIF orientation applied (`ImageOps.exif_transpose`), so the stored pixels are
  upright and carry no orientation tag;
- animated WebP/PNG: the first frame (as `tf.io.decode_image(expand_animations=False)`).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow plugin names of the formats we accept; Image.open tries no other plugin.
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
# File name endings a folder listing treats as images (compared lower-cased).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp")
BACKGROUND = (255, 255, 255)
# Pillow's own default MAX_IMAGE_PIXELS (~89.5 MP, 1024 * 1024 * 1024 // 4 // 3), the
# size above which it warns of a decompression bomb.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
EXIF_ORIENTATION = 0x0112
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)  # transpose, rotate 90/270 (+ flips): w and h swap
_SIXTEEN_BIT_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")

# Magic numbers of formats people put in image folders that we do not accept, to say
# what a rejected file is (sniffed from bytes, never by letting Pillow open them).
_OTHER_FORMATS = (
    (0, b"GIF8", "GIF"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (4, b"ftypheic", "HEIC"),
    (4, b"ftypheix", "HEIC"),
    (4, b"ftypmif1", "HEIF"),
    (4, b"ftypavif", "AVIF"),
    (0, b"%PDF", "PDF"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"8BPS", "PSD"),
)


class BadImage(Exception):
    """A file that cannot be ingested: `kind` (a short code) and a one-line `reason`."""

    KINDS = (
        "unreadable",
        "empty",
        "not_image",
        "truncated",
        "corrupt",
        "too_large",
        "bad_exif",
        "unsupported_mode",
        "outside_class_folder",
    )

    def __init__(self, kind: str, reason: str) -> None:
        assert kind in self.KINDS, kind
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def sniff_other_format(data: bytes) -> str | None:
    """The name of a known non-accepted format these bytes start with, if any."""
    for offset, magic, name in _OTHER_FORMATS:
        if data[offset : offset + len(magic)] == magic:
            return name
    return None


@contextlib.contextmanager
def pixel_limit(max_pixels: int) -> Iterator[None]:
    """Pillow's bomb check at `max_pixels` (warning above, error above twice), as errors.

    Pillow reads its limit from the module global `Image.MAX_IMAGE_PIXELS`; this sets it
    for the duration of one conversion (each worker process converts one image at a time)
    and turns its DecompressionBombWarning into an exception.
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = int(max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _bomb(width: int, height: int, max_pixels: int) -> BadImage:
    return BadImage(
        "too_large",
        f"{width}x{height} = {width * height:,} pixels is over the limit of {max_pixels:,} "
        "(decompression bomb guard; raise --max_image_pixels to accept it)",
    )


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Opens (header only, no pixels decoded yet) and checks the size against `max_pixels`.

    Call inside `pixel_limit(max_pixels)`, which keeps Pillow's own checks (some plugins
    repeat them while loading) at the same limit.
    """
    if not data:
        raise BadImage("empty", "zero bytes")
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the header's size is checked below, with a clear reason
    try:
        image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except UnidentifiedImageError:
        other = sniff_other_format(data)
        what = f"a {other} file" if other else "not an image"
        raise BadImage(
            "not_image", f"{what} (accepted: JPEG, PNG, WebP, BMP; {len(data):,} bytes)"
        ) from None
    except Exception as err:  # a malformed header can raise almost anything
        raise BadImage("corrupt", f"unreadable header: {_first_line(err)}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    width, height = image.size
    if width < 1 or height < 1:
        raise BadImage("corrupt", f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise _bomb(width, height, max_pixels)
    return image


def orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8; 1 when absent or out of range)."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception as err:
        raise BadImage("bad_exif", f"unreadable EXIF metadata: {_first_line(err)}") from None
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright_size(size: tuple[int, int], orient: int) -> tuple[int, int]:
    """(width, height) after applying the EXIF orientation."""
    return (size[1], size[0]) if orient in _SWAPPING_ORIENTATIONS else size


def load_pixels(image: Image.Image, draft_size: tuple[int, int] | None = None) -> None:
    """Decodes every pixel (so truncation shows here). `draft_size`: let a JPEG decode at
    1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling) while staying at least that large."""
    try:
        if draft_size is not None and image.format == "JPEG":
            image.draft(None, draft_size)
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadImage("too_large", f"decompression bomb: {_first_line(err)}") from None
    except MemoryError:
        raise BadImage("too_large", "out of memory while decoding") from None
    except Exception as err:
        message = _first_line(err)
        kind = "truncated" if "truncat" in message.lower() else "corrupt"
        raise BadImage(kind, message) from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any decoded mode -> RGB (see the module docstring for the rules)."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in _SIXTEEN_BIT_GREY:
        wide = np.asarray(image).astype(np.int64)
        grey = (np.clip(wide, 0, 65535) * 255 + 32767) // 65535
        return Image.fromarray(grey.astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        raise BadImage("unsupported_mode", "floating-point pixels (mode F)")
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except Exception as err:
        raise BadImage("unsupported_mode", f"mode {mode}: {_first_line(err)}") from None


@dataclass(frozen=True)
class Decoded:
    """An upright RGB picture and what the file held."""

    image: Image.Image  # RGB, every pixel loaded, EXIF orientation applied
    source_format: str  # Pillow's name: JPEG, PNG, WEBP, BMP
    source_mode: str  # Pillow mode before conversion: RGB, L, P, RGBA, CMYK, I;16, ...
    source_size: tuple[int, int]  # (width, height) as stored in the file
    orientation: int  # EXIF orientation that was applied (1: none)

    @property
    def upright_size(self) -> tuple[int, int]:
        """The file's full (width, height) once upright (before any draft reduction)."""
        return upright_size(self.source_size, self.orientation)


def decode_rgb(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    draft_for: Callable[[tuple[int, int]], tuple[int, int] | None] | None = None,
) -> Decoded:
    """Bytes of one file -> an upright RGB picture (every pixel loaded).

    `draft_for(size)`: given the file's (width, height), the size a JPEG may be decoded
    down to (libjpeg DCT scaling), or None. Raises BadImage for every kind of bad file.
    """
    with pixel_limit(max_pixels):
        image = open_image(data, max_pixels)
        source_format, source_mode, source_size = image.format or "", image.mode, image.size
        load_pixels(image, draft_for(source_size) if draft_for else None)
        orient = orientation(image)  # after load: a PNG's eXIf chunk may follow its pixels
        if orient != 1:
            try:
                image = ImageOps.exif_transpose(image)
            except Exception as err:
                raise BadImage(
                    "bad_exif", f"cannot apply EXIF orientation: {_first_line(err)}"
                ) from None
        return Decoded(to_rgb(image), source_format, source_mode, source_size, orient)


def to_array(image: Image.Image) -> np.ndarray:
    """uint8 [H, W, 3]."""
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
