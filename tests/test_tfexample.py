"""simclr.tfexample writes the bytes TensorFlow writes: the same serialized Examples
(`tf.train.Example.SerializeToString(deterministic=True)`) and TFRecord files that
`tf.data.TFRecordDataset` reads back, CRCs checked."""

import numpy as np
import pytest
import tensorflow as tf
from simclr import tfexample
from simclr.images.records import example_bytes


def _tensorflow_example(features: dict) -> bytes:
    def feature(value):
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    example = tf.train.Example(
        features=tf.train.Features(feature={k: feature(v) for k, v in features.items()})
    )
    return example.SerializeToString(deterministic=True)


@pytest.mark.parametrize("label", [-1, 0, 9, 127, 128, 300, 2**40, -(2**63)])
def test_example_bytes_equal_tensorflows(label):
    rng = np.random.default_rng(label & 0xFFFF)
    image = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    features = {"image": image, "label": label, "height": 117, "width": 4096, "path": "a/ü.jpg"}
    ours = example_bytes(image, label, 117, 4096, "a/ü.jpg")
    assert ours == _tensorflow_example({**features, "path": "a/ü.jpg".encode()})
    parsed = tf.io.parse_single_example(
        ours,
        {
            "label": tf.io.FixedLenFeature([], tf.int64),
            "image": tf.io.FixedLenFeature([], tf.string),
        },
    )
    assert int(parsed["label"]) == label and parsed["image"].numpy() == image


def test_framed_records_equal_tensorflows_writer(tmp_path):
    records = [b"", b"x", tfexample.example_bytes({"a": 1, "b": b"\x00" * 70000})]
    ours, theirs = tmp_path / "ours.tfrecord", tmp_path / "theirs.tfrecord"
    ours.write_bytes(b"".join(tfexample.frame(r) for r in records))
    with tf.io.TFRecordWriter(str(theirs)) as writer:
        for record in records:
            writer.write(record)
    assert ours.read_bytes() == theirs.read_bytes()
    read = [r.numpy() for r in tf.data.TFRecordDataset(str(ours))]
    assert read == records


def test_a_flipped_byte_fails_tensorflows_crc_check(tmp_path):
    path = tmp_path / "bad.tfrecord"
    framed = bytearray(tfexample.frame(b"payload"))
    framed[14] ^= 1
    path.write_bytes(bytes(framed))
    with pytest.raises(tf.errors.DataLossError):
        list(tf.data.TFRecordDataset(str(path)))
