"""Storage size: the shorter side brought to `stored_size`, aspect ratio kept.

Defaults follow SimCLR's ImageNet evaluation, which centre-crops 0.875 of the shorter
side (google-research/simclr `tf2/data_util.py`, `CROP_PROPORTION = 0.875`) and resizes it
to the training resolution: storing the shorter side at `image_size / 0.875` (about 8/7 of
it; 224 -> 256) lets evaluation take that centre crop at full resolution, and
pretraining's random crops (area 0.08-1 of the whole stored picture) lose nothing. At
`image_size <= 32` (CIFAR practice: no evaluation crop) the images are stored at the
training size itself.

Downscaling is Lanczos with Pillow's `reducing_gap` (a box reduction to within 3x of the
target first, then Lanczos: indistinguishable from a plain Lanczos resize, several times
faster on large photos), after letting libjpeg decode large JPEGs at 1/2, 1/4 or 1/8
scale while staying at least twice the target (what `Image.thumbnail` does). Smaller
images are upscaled (bicubic), so every stored picture has its shorter side exactly at
`stored_size`: evaluation can centre-crop without another resize, and the training
crops keep one distribution whatever the source resolution.
"""

from __future__ import annotations

import math

from PIL import Image

EVAL_CROP_PROPORTION = 0.875  # google-research/simclr tf2/data_util.py CROP_PROPORTION
CIFAR_SIZE_LIMIT = 32  # at or below: stored at the training size (no evaluation crop)
REDUCING_GAP = 3.0
DRAFT_MARGIN = 2.0  # JPEG draft decoding keeps at least this multiple of the target
JPEG_MAX_SIDE = 65_500  # libjpeg's limit is 65,535 pixels a side


def default_stored_size(image_size: int) -> int:
    """image_size for <= 32 px, else round(image_size / 0.875) (224 -> 256, 96 -> 110)."""
    if image_size <= CIFAR_SIZE_LIMIT:
        return int(image_size)
    return int(math.floor(image_size / EVAL_CROP_PROPORTION + 0.5))


def stored_dimensions(width: int, height: int, stored_size: int) -> tuple[int, int]:
    """(width, height) with the shorter side at `stored_size`, the other scaled and rounded.

    Integer arithmetic (round half up), so the result never depends on float rounding.
    """
    if width <= height:
        return stored_size, max(1, (2 * height * stored_size + width) // (2 * width))
    return max(1, (2 * width * stored_size + height) // (2 * height)), stored_size


def draft_size(width: int, height: int, stored_size: int) -> tuple[int, int] | None:
    """The size to ask a JPEG decoder for (None when no DCT scaling can help)."""
    scale = stored_size / min(width, height)
    if scale * DRAFT_MARGIN >= 1.0:
        return None
    return (
        math.ceil(width * scale * DRAFT_MARGIN),
        math.ceil(height * scale * DRAFT_MARGIN),
    )


def resize_to(image: Image.Image, size: tuple[int, int]) -> tuple[Image.Image, str]:
    """(resized image, "down" | "up" | "none")."""
    if image.size == size:
        return image, "none"
    if size[0] < image.size[0] or size[1] < image.size[1]:
        resized = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
        return resized, "down"
    return image.resize(size, Image.Resampling.BICUBIC), "up"
