"""prepare_data's output: TFRecord shards, the manifest, and loaders over them.

Layout of a data directory (local or gs://):

    manifest.json                      # written last; its presence means "complete"
    train-00000-of-00016.tfrecord ...  # source order, contiguous blocks
    test-00000-of-00003.tfrecord ...
    label_0.01.tfrecord ...            # class-balanced labelled subsets of train

Each record is a `tf.train.Example` with `image` (3072 raw uint8 bytes, HWC) and
`label` (int64). Image datasets (`simclr.images`, manifest format_version 2) hold
JPEG/PNG records of varying stored sizes instead; every reader here accepts both:
`load_arrays` and `make_dataset` decode them and take the centre `image_size` crop
(evaluation's view), `encoded_records` + `crop_windows` give pretraining its crops.
The writer builds the serialized examples with numpy from a fixed template (every
record has the same length) and frames them with `simclr.tfexample`, which makes writing
fast, TensorFlow-free and the bytes deterministic; `load_arrays` reads them back the
same way, without per-image TF ops.

Modules, one concern each (TensorFlow-free: all but `tfrecord` and `pipeline`, and this
package's own namespace): `records` (the constants, the Example template, the TFRecord
framing and its CRCs, `read_record_file`), `manifest` (the manifest and its splits),
`shards` (shard names, `write_records`, `write_split`, finding and verifying a split's files), `subsets`
(class counts, the balanced label subsets), `arrays` (`load_arrays`), `canvas`
(`crop_canvas`), `tfrecord` (parsing records with TensorFlow,
`read_image_file`) and `pipeline` (`make_dataset`, `encoded_records`, `crop_windows`,
`batch_crop_windows`).
"""

from __future__ import annotations

from simclr.data.arrays import load_arrays
from simclr.data.canvas import crop_canvas
from simclr.data.manifest import (
    image_size,
    is_image_dataset,
    is_labelled,
    load_manifest,
    local_data_dir,
    manifest_json,
    split_names,
    split_size,
)
from simclr.data.records import (
    ENCODED_FORMATS,
    FORMAT_VERSION,
    IMAGE_BYTES,
    IMAGE_FORMAT_VERSION,
    IMAGE_SHAPE,
    LABEL_PREFIX,
    MANIFEST,
    RECORD_BYTES,
    TEST,
    TRAIN,
    read_record_file,
    serialize_examples,
)
from simclr.data.shards import (
    record_files,
    sha256_file,
    shard_name,
    verified_files,
    verify_shard,
    write_records,
    write_split,
)
from simclr.data.subsets import balanced_subset, class_counts, indices_sha256, subset_name
from simclr.lazy import module_getattr

# These need TensorFlow: they resolve on first use (PEP 562), so that importing
# `simclr.data` (every task does, before it validates its flags) loads none.
_TENSORFLOW_NAMES = {
    "parse_example": "tfrecord",
    "read_image_file": "tfrecord",
    "make_dataset": "pipeline",
    "encoded_records": "pipeline",
    "crop_windows": "pipeline",
    "batch_crop_windows": "pipeline",
}

__all__ = [
    "ENCODED_FORMATS",
    "FORMAT_VERSION",
    "IMAGE_BYTES",
    "IMAGE_FORMAT_VERSION",
    "IMAGE_SHAPE",
    "LABEL_PREFIX",
    "MANIFEST",
    "RECORD_BYTES",
    "TEST",
    "TRAIN",
    "balanced_subset",
    "class_counts",
    "crop_canvas",
    "image_size",
    "indices_sha256",
    "is_image_dataset",
    "is_labelled",
    "load_arrays",
    "load_manifest",
    "local_data_dir",
    "manifest_json",
    "read_record_file",
    "record_files",
    "serialize_examples",
    "sha256_file",
    "shard_name",
    "split_names",
    "split_size",
    "subset_name",
    "verified_files",
    "verify_shard",
    "write_records",
    "write_split",
    *_TENSORFLOW_NAMES,
]


__getattr__ = module_getattr(__name__, _TENSORFLOW_NAMES)
