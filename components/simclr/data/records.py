"""The record format: the constants, the serialized Example (numpy, from a fixed
template) and the TFRecord framing and its CRCs, read back with numpy.

Each record is a `tf.train.Example` with `image` (3072 raw uint8 bytes, HWC) and
`label` (int64). The writer builds the serialized examples with numpy from a fixed
template (every record has the same length), which makes writing fast and the bytes
deterministic; `read_record_file` reads them back the same way, without per-image TF ops.
"""

from __future__ import annotations

import numpy as np

from simclr import tfexample
from simclr.errors import UserError

FORMAT_VERSION = 1
IMAGE_FORMAT_VERSION = 2  # simclr.images datasets (simclr.images.manifest)
ENCODED_FORMATS = ("jpeg", "png")
IMAGE_SHAPE = (32, 32, 3)
IMAGE_BYTES = 32 * 32 * 3
MANIFEST = "manifest.json"
TRAIN, TEST = "train", "test"
LABEL_PREFIX = "label_"

# TFRecord framing: uint64 length, uint32 masked crc of the length, data, uint32 crc.
_FRAME_HEAD, _FRAME_TAIL = 12, 4


# ---------------------------------------------------------------------------
# Example serialization (simclr.tfexample's encoding, built once as a template)
# ---------------------------------------------------------------------------


def _example_bytes(image: bytes, label: int) -> bytes:
    """Example{features{feature{"image": bytes_list}, feature{"label": int64_list}}}."""
    return tfexample.example_bytes({"image": image, "label": label})


def _template() -> tuple[np.ndarray, int, int]:
    """(template bytes, offset of the image, offset of the label byte).

    Labels 0..9 encode as one varint byte, so every record has the same length.
    """
    marker_image = bytes(range(256)) * (IMAGE_BYTES // 256)
    base = _example_bytes(marker_image, 0)
    image_at = base.index(marker_image)
    label_at = len(base) - 1  # the label's varint is the very last byte
    assert _example_bytes(marker_image, 7)[label_at] == 7
    return np.frombuffer(base, np.uint8), image_at, label_at


_TEMPLATE, _IMAGE_AT, _LABEL_AT = _template()
RECORD_BYTES = len(_TEMPLATE)


def serialize_examples(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """uint8 [N,32,32,3] + int labels in 0..9 -> uint8 [N, RECORD_BYTES] serialized Examples."""
    n = len(images)
    out = np.empty((n, RECORD_BYTES), np.uint8)
    out[:] = _TEMPLATE
    out[:, _IMAGE_AT : _IMAGE_AT + IMAGE_BYTES] = images.reshape(n, IMAGE_BYTES)
    out[:, _LABEL_AT] = labels
    return out


def _deserialize_fast(records: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Inverse of serialize_examples, or None if the records do not follow the template."""
    mask = np.ones(RECORD_BYTES, bool)
    mask[_IMAGE_AT : _IMAGE_AT + IMAGE_BYTES] = False
    mask[_LABEL_AT] = False
    if not np.array_equal(
        records[:, mask], np.broadcast_to(_TEMPLATE[mask], (len(records), mask.sum()))
    ):
        return None
    labels = records[:, _LABEL_AT].astype(np.int64)
    if labels.size and labels.max() > 127:
        return None
    images = records[:, _IMAGE_AT : _IMAGE_AT + IMAGE_BYTES].reshape((-1, *IMAGE_SHAPE))
    return np.ascontiguousarray(images), labels


# ---------------------------------------------------------------------------
# TFRecord framing, read with numpy
# ---------------------------------------------------------------------------


def _check_record_crcs(framed: np.ndarray, path: str) -> None:
    """The masked CRC-32C of every record's length and data (TFRecord framing)."""
    head_crcs = framed[:, 8:12].copy().view("<u4").ravel()
    tail_crcs = framed[:, -4:].copy().view("<u4").ravel()
    for i, row in enumerate(framed):
        if (
            tfexample.masked_crc(row[:8].tobytes()) != head_crcs[i]
            or tfexample.masked_crc(row[_FRAME_HEAD:-_FRAME_TAIL].tobytes()) != tail_crcs[i]
        ):
            raise UserError(f"{path}: corrupt TFRecord file: record {i} fails its CRC check")


def read_record_file(path: str) -> tuple[np.ndarray, np.ndarray]:
    """One local TFRecord file -> (uint8 [N,32,32,3], int64 [N]), parsed with numpy."""
    with open(path, "rb") as f:
        raw = f.read()
    frame = _FRAME_HEAD + RECORD_BYTES + _FRAME_TAIL
    if len(raw) % frame == 0:
        framed = np.frombuffer(raw, np.uint8).reshape(-1, frame)
        lengths = framed[:, :8].copy().view("<u8").ravel()
        if np.all(lengths == RECORD_BYTES):
            _check_record_crcs(framed, path)
            parsed = _deserialize_fast(framed[:, _FRAME_HEAD : _FRAME_HEAD + RECORD_BYTES])
            if parsed is not None:
                return parsed
    # Records not in our fixed layout need TensorFlow's parser: imported only then.
    from simclr.data.tfrecord import _read_record_file_tf

    return _read_record_file_tf(path)
