"""The canvas that pretraining's crops of stored pictures are padded to (no TensorFlow:
the input pipeline's size is known before it is built)."""

from __future__ import annotations

import math
from typing import Any


def crop_canvas(stored_size: int, policy: Any) -> int:
    """The side of the square canvas that holds any crop of a stored picture: a crop
    fits inside the picture, whose shorter side is `stored_size`, and its aspect is at
    most the policy's extreme, so neither of its sides exceeds stored_size x that."""
    extreme = max(policy.crop_aspect_max, 1.0 / policy.crop_aspect_min, 1.0)
    return math.ceil(stored_size * extreme)
