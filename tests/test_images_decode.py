"""simclr.images decode/resize/convert: every bad-file kind, every colour mode, real photos."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image
from simclr.images import resize
from simclr.images.convert import Converted, ConvertSpec, Rejected, convert_batch, convert_image
from simclr.images.decode import BadImage, decode_rgb, to_array

from tests.fixtures_images import (
    bad_files,
    cifar_jpegs,
    jpeg_bytes,
    jpeg_with_orientation,
    png16,
    png_bytes,
    skimage_photos,
)


def _decoded(data: bytes, spec: ConvertSpec | None = None) -> np.ndarray:
    """The pixels a record stores for `data` (PNG, so exactly)."""
    spec = spec or ConvertSpec(stored_size=4, image_format="png")
    result = convert_image(data, spec)
    return to_array(Image.open(io.BytesIO(result.data)))


@pytest.mark.parametrize("name", sorted(bad_files()))
def test_every_bad_file_kind_is_a_reason_not_a_traceback(name: str) -> None:
    data, kind = bad_files()[name]
    start = time.perf_counter()
    [result] = convert_batch([data], ConvertSpec(stored_size=64))
    assert isinstance(result, Rejected), result
    assert result.kind == kind, result
    assert "\n" not in result.reason and result.reason
    assert time.perf_counter() - start < 2.0  # the bomb is refused from its header alone


def test_reasons_say_what_the_file_is() -> None:
    reasons = {
        name: convert_batch([data], ConvertSpec(stored_size=64))[0].reason
        for name, (data, _) in bad_files().items()
    }
    assert reasons["empty.jpg"] == "zero bytes"
    assert reasons["animation.png"].startswith("a GIF file")
    assert reasons["notes.jpg"].startswith("not an image")
    assert "truncated" in reasons["truncated.jpg"]
    assert "40,000,000,000 pixels is over the limit of 89,478,485" in reasons["bomb.png"]


def test_a_real_large_image_is_a_bomb_under_a_lowered_limit() -> None:
    data = skimage_photos()["astronaut.png"].read_bytes()  # 512 x 512
    with pytest.raises(BadImage) as err:
        convert_image(data, ConvertSpec(stored_size=64, max_pixels=512 * 512 - 1))
    assert err.value.kind == "too_large"
    assert convert_image(data, ConvertSpec(stored_size=64, max_pixels=512 * 512)).width == 64


def test_a_thin_strip_is_refused_when_its_stored_copy_would_be_a_bomb() -> None:
    strip = png_bytes(Image.new("RGB", (1, 5000), (10, 20, 30)))  # 5,000 pixels
    with pytest.raises(BadImage) as err:
        convert_image(strip, ConvertSpec(stored_size=256, image_format="png"))
    assert err.value.kind == "too_large" and "256x1280000" in err.value.reason


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    pixels = _decoded(jpeg_bytes(cmyk, quality=100))
    assert np.abs(pixels.astype(int) - [255, 0, 0]).max() <= 3


def test_greyscale_becomes_three_equal_channels() -> None:
    grey = Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4) * 16, "L")
    pixels = _decoded(png_bytes(grey))
    assert pixels.shape == (4, 4, 3)
    np.testing.assert_array_equal(pixels[..., 0], np.asarray(grey))
    np.testing.assert_array_equal(pixels[..., 0], pixels[..., 2])


def test_palette_with_transparency_is_composited_on_white() -> None:
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 200, 30, 40] + [0, 0, 0] * 254)
    palette.putpixel((0, 0), 0)
    pixels = _decoded(png_bytes(palette, transparency=0))  # index 0 transparent
    assert tuple(pixels[0, 0]) == (255, 255, 255)  # dropping alpha would give black
    assert tuple(pixels[3, 3]) == (200, 30, 40)


def test_alpha_is_composited_on_white() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[0, 0] = (0, 0, 0, 0)  # fully transparent black
    rgba[0, 1] = (0, 0, 0, 128)  # half-transparent black
    rgba[1, 1] = (10, 200, 30, 255)
    pixels = _decoded(png_bytes(Image.fromarray(rgba, "RGBA")))
    assert tuple(pixels[0, 0]) == (255, 255, 255)
    assert abs(int(pixels[0, 1, 0]) - 127) <= 1  # 255 * (1 - 128/255)
    assert tuple(pixels[1, 1]) == (10, 200, 30)


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257 * 100, 32768, 65535]], np.uint16)
    grey = Image.fromarray(values)  # mode I;16
    assert grey.mode.startswith("I;16")
    pixels = _decoded(png_bytes(grey), ConvertSpec(stored_size=1, image_format="png"))
    np.testing.assert_array_equal(pixels[0, :, 0], [0, 100, 128, 255])  # clipping: 255s


def test_sixteen_bit_rgb_is_scaled() -> None:
    array = np.zeros((2, 2, 3), np.uint16)
    array[..., 0], array[..., 1], array[..., 2] = 65535, 32896, 257 * 7
    pixels = _decoded(png16(array))
    np.testing.assert_array_equal(pixels[0, 0], [255, 128, 7])


@pytest.mark.parametrize(
    ("orientation", "top", "bottom"),
    [(1, None, None), (6, "red", "blue"), (8, "blue", "red"), (3, None, None)],
)
def test_exif_orientation_is_applied(orientation: int, top, bottom) -> None:
    # 40 wide x 20 high: left half red, right half blue (as stored in the file)
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    data = jpeg_with_orientation(Image.fromarray(stored), orientation)
    result = convert_image(data, ConvertSpec(stored_size=20, image_format="png"))
    pixels = to_array(Image.open(io.BytesIO(result.data)))
    colours = {"red": (255, 0, 0), "blue": (0, 0, 255)}
    if orientation in (6, 8):  # rotated a quarter turn: 20 wide x 40 high
        assert (result.width, result.height) == (20, 40) and result.rotated
        assert np.abs(pixels[5, 10].astype(int) - colours[top]).max() < 40
        assert np.abs(pixels[35, 10].astype(int) - colours[bottom]).max() < 40
    else:
        assert (result.width, result.height) == (40, 20)
        left = "blue" if orientation == 3 else "red"  # 3: rotated half a turn
        assert np.abs(pixels[10, 5].astype(int) - colours[left]).max() < 40
        assert result.rotated == (orientation == 3)


def test_webp_and_bmp_are_accepted() -> None:
    photo = Image.open(skimage_photos()["coffee.png"]).convert("RGB")
    for fmt in ("WEBP", "BMP"):
        buffer = io.BytesIO()
        photo.save(buffer, fmt)
        result = convert_image(buffer.getvalue(), ConvertSpec(stored_size=100))
        assert result.source_format == fmt and (result.width, result.height) == (150, 100)


@pytest.mark.parametrize("name", sorted(skimage_photos()))
def test_real_photos_are_stored_with_the_shorter_side_at_stored_size(name: str) -> None:
    data = skimage_photos()[name].read_bytes()
    width, height = Image.open(io.BytesIO(data)).size
    result = convert_image(data, ConvertSpec(stored_size=110))
    assert min(result.width, result.height) == 110
    assert abs(result.width / result.height - width / height) < 0.02
    stored = Image.open(io.BytesIO(result.data))
    assert stored.format == "JPEG" and stored.mode == "RGB"
    assert stored.size == (result.width, result.height)
    assert result.resized == ("up" if min(width, height) < 110 else "down")


@pytest.mark.parametrize("size", [(1000, 37), (37, 1000), (333, 777), (4000, 3001)])
def test_odd_sizes_and_aspect_ratios(size: tuple[int, int]) -> None:
    photo = Image.open(skimage_photos()["astronaut.png"]).convert("RGB").resize(size)
    result = convert_image(jpeg_bytes(photo, quality=92), ConvertSpec(stored_size=64))
    assert (result.width, result.height) == resize.stored_dimensions(*size, 64)
    assert min(result.width, result.height) == 64


def test_stored_dimensions_round_half_up_and_keep_the_shorter_side() -> None:
    assert resize.stored_dimensions(451, 300, 256) == (385, 256)  # 384.85
    assert resize.stored_dimensions(300, 451, 256) == (256, 385)
    assert resize.stored_dimensions(3, 2, 32) == (48, 32)
    assert resize.stored_dimensions(5, 2, 1) == (3, 1)  # 2.5 rounds up


def test_default_stored_size() -> None:
    assert resize.default_stored_size(224) == 256  # SimCLR: centre crop 0.875
    assert resize.default_stored_size(96) == 110
    assert resize.default_stored_size(64) == 73
    assert resize.default_stored_size(32) == 32  # CIFAR practice: no eval crop


def test_draft_decoding_matches_a_full_resolution_resize() -> None:
    """libjpeg's DCT-scaled decode + reducing_gap Lanczos vs a plain Lanczos resize."""
    data = skimage_photos()["retina.jpg"].read_bytes()  # 1411 x 1411
    fast = to_array(Image.open(io.BytesIO(convert_image(data, ConvertSpec(110, "png")).data)))
    full = np.asarray(
        Image.open(io.BytesIO(data)).convert("RGB").resize((110, 110), Image.Resampling.LANCZOS)
    )
    mse = np.mean((fast.astype(float) - full.astype(float)) ** 2)
    assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 35  # PSNR in dB


def test_a_jpeg_already_at_the_stored_size_is_kept_byte_for_byte() -> None:
    _, _, data = cifar_jpegs().files[0]  # 32 x 32 RGB JPEG
    kept = convert_image(data, ConvertSpec(stored_size=32, image_format="jpeg"))
    assert kept.passthrough and kept.data == data
    as_png = convert_image(data, ConvertSpec(stored_size=32, image_format="png"))
    assert not as_png.passthrough
    np.testing.assert_array_equal(  # lossless: the pixels Pillow decodes from the source
        to_array(Image.open(io.BytesIO(as_png.data))), to_array(Image.open(io.BytesIO(data)))
    )
    rotated = convert_image(jpeg_with_orientation(Image.open(io.BytesIO(data)), 6), kept_spec())
    assert not rotated.passthrough and rotated.rotated


def kept_spec() -> ConvertSpec:
    return ConvertSpec(stored_size=32, image_format="jpeg")


def test_decode_rgb_reports_source_details() -> None:
    data = skimage_photos()["horse.png"].read_bytes()  # RGBA 400 x 328
    decoded = decode_rgb(data)
    assert decoded.source_mode == "RGBA" and decoded.source_size == (400, 328)
    assert decoded.image.mode == "RGB"
    converted = convert_image(data, ConvertSpec(64))
    assert isinstance(converted, Converted) and converted.source_mode == "RGBA"
