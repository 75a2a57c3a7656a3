"""tf.train.Example records without TensorFlow: the protobuf encoding of an Example of
int64 and bytes features, and the TFRecord file framing.

Written here (the protobuf wire format and TFRecord framing are small, fixed specs)
so that ingest, whose worker processes and CIFAR writer need only numpy and Pillow,
never loads TensorFlow; the bytes equal TensorFlow's own (`SerializeToString
(deterministic=True)`, `tf.io.TFRecordWriter`), which tests/test_tfexample.py checks.
"""

from __future__ import annotations

import struct

import google_crc32c

_MASK_DELTA = 0xA282EAD8
_WIRE_LENGTH = 2  # length-delimited: bytes, strings, messages, packed repeated


def varint(value: int) -> bytes:
    """Protobuf base-128 varint; a negative int64 as its 64-bit two's complement."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return varint(number << 3 | _WIRE_LENGTH) + varint(len(payload)) + payload


def example_bytes(features: dict[str, int | bytes]) -> bytes:
    """A serialized Example with one value per feature (int: Int64List, bytes:
    BytesList), keys sorted as deterministic serialisation writes a map."""
    entries = b""
    for key in sorted(features):
        value = features[key]
        if isinstance(value, bytes):
            feature = field(1, field(1, value))  # Feature.bytes_list = 1 {value = 1}
        else:
            feature = field(3, field(1, varint(int(value))))  # int64_list = 3, packed
        entries += field(1, field(1, key.encode("utf-8")) + field(2, feature))
    return field(1, entries)  # Example.features = 1 {feature = 1: map entries}


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C of `data`."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    """One TFRecord: uint64 length, masked crc of it, the record, masked crc of it."""
    length = struct.pack("<Q", len(record))
    return (
        length
        + struct.pack("<I", masked_crc(length))
        + record
        + struct.pack("<I", masked_crc(record))
    )
