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
(evaluation's view), `encoded_records` + `crop_windows` give pretraining its crops. The writer builds the serialized examples with numpy from a fixed
template (every record has the same length), which makes writing fast and the bytes
deterministic; `load_arrays` reads them back the same way, without per-image TF ops.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from simclr import storage
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
# Example serialization (protobuf wire format, built once as a template)
# ---------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(tag << 3 | 2) + _varint(len(payload)) + payload


def _example_bytes(image: bytes, label: int) -> bytes:
    """Example{features{feature{"image": bytes_list}, feature{"label": int64_list}}}."""
    image_feature = _field(1, _field(1, image))  # Feature.bytes_list.value
    label_feature = _field(3, _field(1, _varint(label)))  # Feature.int64_list (packed)
    entries = _field(1, _field(1, b"image") + _field(2, image_feature))
    entries += _field(1, _field(1, b"label") + _field(2, label_feature))
    return _field(1, entries)


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
# Writing
# ---------------------------------------------------------------------------


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def subset_name(fraction: float) -> str:
    """The manifest key of a label subset: 0.01 -> "0.01", 1.0 -> "1"."""
    return f"{fraction:g}"


def write_records(path: str, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Writes one local TFRecord file; returns {"file", "num_examples", "sha256"}."""
    import tensorflow as tf

    serialized = serialize_examples(images, labels)
    with tf.io.TFRecordWriter(path) as writer:
        for row in serialized:
            writer.write(row.tobytes())
    return {
        "file": os.path.basename(path),
        "num_examples": int(len(images)),
        "sha256": _sha256_file(path),
    }


def write_split(
    out_dir: str, split: str, images: np.ndarray, labels: np.ndarray, num_shards: int
) -> dict[str, Any]:
    """Writes `split` as `num_shards` contiguous shards (source order) into a local dir.

    Returns the manifest entry: num_examples, class_counts, files, shards.
    """
    shards = []
    bounds = np.linspace(0, len(images), num_shards + 1).round().astype(int)
    for i in range(num_shards):
        lo, hi = bounds[i], bounds[i + 1]
        path = os.path.join(out_dir, shard_name(split, i, num_shards))
        shards.append(write_records(path, images[lo:hi], labels[lo:hi]))
    return {
        "num_examples": int(len(images)),
        "class_counts": class_counts(labels),
        "files": [s["file"] for s in shards],
        "shards": shards,
    }


def class_counts(labels: np.ndarray, num_classes: int = 10) -> list[int]:
    return [int(c) for c in np.bincount(labels, minlength=num_classes)]


def balanced_subset(
    labels: np.ndarray, fraction: float, seed: int, num_classes: int = 10
) -> np.ndarray:
    """Sorted indices of a class-balanced subset: the same count for every class.

    Per class: round(fraction * len(labels) / num_classes), at least 1 and at most the
    smallest class. The draw depends only on (seed, fraction), not on other fractions.
    """
    smallest = min(class_counts(labels, num_classes))
    if smallest < 1:
        raise UserError(
            f"cannot draw a class-balanced subset: a class has no training image ({class_counts(labels)})"
        )
    per_class = min(max(1, round(fraction * len(labels) / num_classes)), smallest)
    fraction_key = int(round(fraction * 1_000_000))
    rng = np.random.default_rng([seed, fraction_key])
    chosen = [
        rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
        for c in range(num_classes)
    ]
    return np.sort(np.concatenate(chosen))


def indices_sha256(indices: np.ndarray) -> str:
    """Checksum of a subset's indices (int64 little-endian, sorted)."""
    return hashlib.sha256(np.asarray(indices, "<i8").tobytes()).hexdigest()


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_json(manifest: dict[str, Any]) -> str:
    """Canonical text of a manifest (sorted keys, so reruns are byte-identical)."""
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def load_manifest(data_dir: str) -> dict[str, Any]:
    """Reads DIR/manifest.json; UserError if it is missing, corrupt or of another version."""
    uri = storage.join(data_dir, MANIFEST)
    if not storage.exists(uri):
        raise UserError(f"{uri}: no manifest (is {data_dir} a prepare_data output?)")
    text = storage.read_bytes(uri).decode("utf-8", errors="replace")
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{uri}: corrupt manifest: {err}") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version not in (FORMAT_VERSION, IMAGE_FORMAT_VERSION):
        raise UserError(
            f"{uri}: unsupported manifest format_version {version!r} (expected "
            f"{FORMAT_VERSION} or {IMAGE_FORMAT_VERSION})"
        )
    if "splits" not in manifest:
        raise UserError(f"{uri}: corrupt manifest: missing splits")
    if version == FORMAT_VERSION and manifest.get("image_format") != "raw_uint8":
        raise UserError(f"{uri}: corrupt manifest: missing splits or image_format raw_uint8")
    if version == IMAGE_FORMAT_VERSION and not (
        manifest.get("image_format") in ENCODED_FORMATS
        and isinstance(manifest.get("image_size"), int)
        and isinstance(manifest.get("stored_size"), int)
        and 0 < manifest["image_size"] <= manifest["stored_size"]
    ):
        raise UserError(
            f"{uri}: corrupt manifest: an image dataset needs image_format jpeg or png "
            "and image_size <= stored_size"
        )
    return manifest


def is_image_dataset(manifest: dict[str, Any]) -> bool:
    """True for `simclr.images` datasets (encoded pictures), False for CIFAR-10 raw records."""
    return manifest.get("format_version") == IMAGE_FORMAT_VERSION


def is_labelled(manifest: dict[str, Any]) -> bool:
    """Whether the records carry class labels (the label protocols need them).

    The rule (docs/design.md, "Your own images"): labelled unless the manifest says
    `"labelled": false`, and only with at least one class name. The CIFAR-10 manifest
    (format_version 1) has no `labelled` key and ten class names: labelled. An unlabelled
    image dataset writes `"labelled": false`, `"class_names": []`, labels -1.
    """
    return bool(manifest.get("labelled", True)) and bool(manifest.get("class_names"))


def image_size(manifest: dict[str, Any]) -> int:
    """The training resolution: the manifest's `image_size` (32 for CIFAR-10)."""
    return int(manifest.get("image_size", IMAGE_SHAPE[0]))


def local_data_dir(data_dir: str, cache_root: str | None = None) -> str:
    """A local directory with the data files (gs:// or s3:// data: downloaded once, cached)."""
    if not storage.is_remote(data_dir):
        load_manifest(data_dir)  # fail early and clearly on a wrong directory
        return data_dir
    load_manifest(data_dir)
    return storage.localize_dir(data_dir, cache_root=cache_root)


def split_names(manifest: dict[str, Any]) -> list[str]:
    """All readable splits: "train", "test", "label_0.01", ..."""
    subsets = [LABEL_PREFIX + key for key in manifest.get("label_subsets", {})]
    return sorted(manifest["splits"]) + subsets


def _split_entries(manifest: dict[str, Any], split: str, where: str) -> list[dict[str, Any]]:
    """[{"file", "num_examples"}, ...] for a split."""
    if split in manifest["splits"]:
        entry = manifest["splits"][split]
        if "shards" in entry:
            return entry["shards"]
        return [{"file": f, "num_examples": None} for f in entry["files"]]
    if split.startswith(LABEL_PREFIX) and split[len(LABEL_PREFIX) :] in manifest.get(
        "label_subsets", {}
    ):
        entry = manifest["label_subsets"][split[len(LABEL_PREFIX) :]]
        return [{k: entry[k] for k in ("file", "num_examples", "sha256") if k in entry}]
    raise UserError(f"{where}: no split {split!r}; available: {', '.join(split_names(manifest))}")


def split_size(data_dir: str, split: str) -> int:
    """Number of examples in a split, from the manifest."""
    manifest = load_manifest(data_dir)
    if split in manifest["splits"]:
        return int(manifest["splits"][split]["num_examples"])
    return sum(int(e["num_examples"]) for e in _split_entries(manifest, split, data_dir))


def record_files(data_dir: str, split: str) -> list[str]:
    """Local paths of the TFRecord files of `split`, in order (localizes gs:// data)."""
    local = local_data_dir(data_dir)
    return verified_files(local, load_manifest(local), split, data_dir)


def verified_files(local: str, manifest: dict[str, Any], split: str, where: str) -> list[str]:
    """The files of `split` under the local dir `local`, each checked by `verify_shard`
    (also for manifests that `load_manifest` does not read, e.g. image datasets)."""
    entries = _split_entries(manifest, split, where)
    paths = [os.path.join(local, e["file"]) for e in entries]
    for path, entry in zip(paths, entries, strict=True):
        if not os.path.isfile(path):
            raise UserError(
                f"{where}: file {os.path.basename(path)} listed in the manifest is missing"
            )
        verify_shard(path, entry, where)
    return paths


_VERIFIED: set[tuple[str, int, int, str]] = set()  # (path, size, mtime_ns, sha256) this process


def verify_shard(path: str, entry: dict[str, Any], where: str) -> None:
    """Checks a shard once per process against its manifest entry: the sha256 (when the
    manifest has one) and, for files in our fixed record layout, the record count."""
    info = os.stat(path)
    key = (path, info.st_size, info.st_mtime_ns, str(entry.get("sha256")))
    if key in _VERIFIED:
        return
    name = os.path.basename(path)
    expected = entry.get("sha256")
    if expected and _sha256_file(path) != expected:
        raise UserError(
            f"{where}: shard {name} is corrupt: its sha256 differs from the manifest's "
            "(re-run prepare-data or re-copy the data)"
        )
    frame = _FRAME_HEAD + RECORD_BYTES + _FRAME_TAIL
    count = entry.get("num_examples")
    if count is not None and info.st_size % frame == 0 and info.st_size // frame != count:
        raise UserError(
            f"{where}: shard {name} holds {info.st_size // frame} records, the manifest "
            f"says {count}"
        )
    _VERIFIED.add(key)


def _check_record_crcs(framed: np.ndarray, path: str) -> None:
    """The masked CRC-32C of every record's length and data (TFRecord framing)."""
    import google_crc32c

    def masked(crc: int) -> int:
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    head_crcs = framed[:, 8:12].copy().view("<u4").ravel()
    tail_crcs = framed[:, -4:].copy().view("<u4").ravel()
    for i, row in enumerate(framed):
        if (
            masked(google_crc32c.value(row[:8].tobytes())) != head_crcs[i]
            or masked(google_crc32c.value(row[_FRAME_HEAD:-_FRAME_TAIL].tobytes())) != tail_crcs[i]
        ):
            raise UserError(f"{path}: corrupt TFRecord file: record {i} fails its CRC check")


def parse_example(serialized: Any) -> tuple[Any, Any]:
    """A serialized Example -> (image uint8 [32,32,3], label int64). Works inside tf.data."""
    import tensorflow as tf

    features = tf.io.parse_single_example(
        serialized,
        {
            "image": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64),
        },
    )
    image = tf.reshape(tf.io.decode_raw(features["image"], tf.uint8), IMAGE_SHAPE)
    return image, features["label"]


def _parse_batch(serialized: Any) -> tuple[Any, Any]:
    import tensorflow as tf

    features = tf.io.parse_example(
        serialized,
        {
            "image": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64),
        },
    )
    images = tf.reshape(tf.io.decode_raw(features["image"], tf.uint8), (-1, *IMAGE_SHAPE))
    return images, features["label"]


def make_dataset(
    data_dir: str,
    split: str,
    *,
    batch_size: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
    repeat: bool = False,
    max_examples: int | None = None,
    input_context: Any = None,
    cache: bool = True,
    drop_remainder: bool = False,
) -> Any:
    """A tf.data.Dataset of (image uint8 [32,32,3], label int64), batched if batch_size
    (image datasets: the centre image_size crop of each stored picture, label -1 if none).

    - Order: the files' order (source order) unless `shuffle`; with `shuffle`, a full
      shuffle seeded by `seed`, reshuffled each epoch, the same sequence every run.
    - `max_examples`: the first N examples in file order (before sharding/shuffling).
    - `input_context` (tf.distribute.InputContext): this input pipeline's share: whole
      files when there are at least as many files as pipelines, else every k-th record.
      `batch_size` is then the batch this pipeline yields (the per-replica batch:
      `input_context.get_per_replica_batch_size(global_batch)`).
    - `cache`: keep the parsed examples in memory after the first epoch.
    """
    import tensorflow as tf

    local = local_data_dir(data_dir)
    files = record_files(local, split)
    size = split_size(local, split)
    if max_examples is not None:
        if max_examples < 1:
            raise UserError(f"max_examples must be >= 1, got {max_examples}")
        size = min(size, max_examples)

    pipelines = input_context.num_input_pipelines if input_context is not None else 1
    shard_files = max_examples is None and pipelines > 1 and len(files) >= pipelines
    if shard_files:
        files = files[input_context.input_pipeline_id :: pipelines]
    ds = tf.data.TFRecordDataset(files)
    if max_examples is not None:
        ds = ds.take(max_examples)
    if pipelines > 1 and not shard_files:
        ds = ds.shard(pipelines, input_context.input_pipeline_id)
    # Parse in batches (one vectorized op per 256 records), then back to examples.
    manifest = load_manifest(local)
    parse = _decode_centre(manifest) if is_image_dataset(manifest) else _parse_batch
    ds = ds.batch(256).map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.unbatch()
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(max(1, size), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if batch_size is not None:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


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
    return _read_record_file_tf(path)


def _decode_centre(manifest: dict[str, Any]):
    """serialized [N] -> (uint8 [N, S, S, 3] centre crops, labels): evaluation's view of
    stored pictures (`simclr.export.decode_images`; their shorter side is already
    stored_size, so no resize)."""
    import tensorflow as tf

    from simclr.export import decode_images
    from simclr.images.records import parse_features

    size, stored = image_size(manifest), int(manifest["stored_size"])

    def parse(serialized):
        example = tf.io.parse_example(serialized, parse_features())
        return decode_images(example["image"], size, stored), example["label"]

    return parse


def read_image_file(path: str, manifest: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """One local shard of an image dataset -> (uint8 [N, S, S, 3], int64 [N] (-1: no label))."""
    import tensorflow as tf

    size = image_size(manifest)
    images, labels = [], []
    dataset = (
        tf.data.TFRecordDataset(path)
        .batch(256)
        .map(_decode_centre(manifest), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    )
    try:
        for x, y in dataset:
            images.append(x.numpy())
            labels.append(y.numpy())
    except tf.errors.OpError as err:
        raise UserError(f"{path}: corrupt TFRecord file: {err.message.splitlines()[0]}") from None
    if not images:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros((0,), np.int64)
    return np.concatenate(images), np.concatenate(labels)


def encoded_records(data_dir: str, split: str, max_examples: int | None = None) -> Any:
    """An image dataset's split as a tf.data.Dataset of its records, undecoded:
    (image bytes, height int32, width int32), the first N in file order. Pretraining
    keeps these in memory (the encoded size, not the decoded one) and decodes and crops
    each picture when a step takes it (`crop_windows`)."""
    import tensorflow as tf

    from simclr.images.records import parse_features

    ds = tf.data.TFRecordDataset(record_files(local_data_dir(data_dir), split))
    if max_examples is not None:
        ds = ds.take(max_examples)

    def parse(serialized):
        example = tf.io.parse_example(serialized, parse_features())
        return (
            example["image"],
            tf.cast(example["height"], tf.int32),
            tf.cast(example["width"], tf.int32),
        )

    return ds.batch(1024).map(parse).unbatch()


def crop_canvas(stored_size: int, policy: Any) -> int:
    """The side of the square canvas that holds any crop of a stored picture: a crop
    fits inside the picture, whose shorter side is `stored_size`, and its aspect is at
    most the policy's extreme, so neither of its sides exceeds stored_size x that."""
    extreme = max(policy.crop_aspect_max, 1.0 / policy.crop_aspect_min, 1.0)
    return math.ceil(stored_size * extreme)


def crop_windows(
    encoded: Any, height: Any, width: Any, seed: Any, policy: Any, canvas: int
) -> tuple[Any, Any, Any, Any]:
    """One stored picture -> its two random crops, cut but not resized: (crop_0 uint8
    [h0, w0, 3], crop_1 [h1, w1, 3], sizes int32 [2, 2] = (h, w) per view, flips bool
    [2]). Each box is drawn by `tf.image.stateless_sample_distorted_bounding_box` over
    the whole picture (the policy's area and aspect ranges; min_object_covered,
    attempts and fallback as `simclr.augment`'s batched crop); flips with the policy's
    probability. `seed`: int64 [2]; view k uses (seed[0], 2 * seed[1] + k). The
    picture is decoded once for both crops. `batch_crop_windows` pads the crops to
    `canvas`; `augment.augment_windows` resizes them on the device. Only the
    whole-picture fallback of a picture more elongated than the aspect range can
    exceed the canvas; it keeps the box's centre canvas x canvas."""
    import tensorflow as tf

    from simclr import augment

    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    shape = tf.stack([height, width, 3])
    image = tf.reshape(image, shape)

    def view(k: int):
        key = tf.stack([seed[0], 2 * seed[1] + k])
        begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape,
            bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
            seed=key,
            min_object_covered=augment._MIN_OBJECT_COVERED,
            aspect_ratio_range=(policy.crop_aspect_min, policy.crop_aspect_max),
            area_range=(policy.crop_area_min, policy.crop_area_max),
            max_attempts=augment._CROP_ATTEMPTS,
            use_image_if_no_bounding_boxes=True,
        )
        size = tf.minimum(extent[:2], canvas)
        corner = begin[:2] + (extent[:2] - size) // 2
        crop = tf.slice(image, tf.concat([corner, [0]], 0), tf.concat([size, [3]], 0))
        flip = tf.random.stateless_uniform([], tf.stack([key[1], key[0]])) < policy.flip_prob
        return crop, size, flip

    (crop_0, size_0, flip_0), (crop_1, size_1, flip_1) = view(0), view(1)
    return crop_0, crop_1, tf.stack([size_0, size_1]), tf.stack([flip_0, flip_1])


def batch_crop_windows(crops: Any, batch_size: int, canvas: int) -> Any:
    """Batches `crop_windows`' elements into what `augment.augment_windows` takes:
    {"crops": (uint8 [B, canvas, canvas, 3]) x 2, "sizes": int32 [B, 2, 2], "flips":
    bool [B, 2]}, each crop zero-padded at its bottom and right. The padding is
    tf.data's own batch copy (padded_batch), measured ~2.4x cheaper on CPU than
    padding each crop in the map and batching."""
    import tensorflow as tf

    side = tf.TensorShape([canvas, canvas, 3])
    batches = crops.padded_batch(
        batch_size, padded_shapes=(side, side, [2, 2], [2]), drop_remainder=True
    )
    return batches.map(
        lambda c0, c1, sizes, flips: {"crops": (c0, c1), "sizes": sizes, "flips": flips}
    )


def _read_record_file_tf(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Fallback for records not in our fixed layout: batched TF parsing."""
    import tensorflow as tf

    images, labels = [], []
    try:
        for batch in tf.data.TFRecordDataset(path).batch(4096).map(_parse_batch):
            images.append(batch[0].numpy())
            labels.append(batch[1].numpy())
    except tf.errors.OpError as err:
        raise UserError(f"{path}: corrupt TFRecord file: {err.message.splitlines()[0]}") from None
    if not images:
        return np.zeros((0, *IMAGE_SHAPE), np.uint8), np.zeros((0,), np.int64)
    return np.concatenate(images), np.concatenate(labels)


def load_arrays(
    data_dir: str, split: str, max_examples: int | None = None, *, sample_seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A whole split as numpy: (uint8 [N,32,32,3], int64 [N]).

    `max_examples` keeps the first N in file order, or, with `sample_seed`, a seeded
    random N (in file order). Use the seed for anything measured on a part of a split:
    a split may be stored grouped by class (the test split of the JPEG source is).
    """
    if sample_seed is not None:
        x, y = load_arrays(data_dir, split)
        if max_examples is not None and max_examples < len(y):
            rng = np.random.default_rng([int(sample_seed), sum(split.encode())])
            keep = np.sort(rng.choice(len(y), int(max_examples), replace=False))
            x, y = x[keep], y[keep]
        return x, y
    images, labels, total = [], [], 0
    local = local_data_dir(data_dir)
    manifest = load_manifest(local)
    for path in record_files(local, split):
        x, y = (
            read_image_file(path, manifest)
            if is_image_dataset(manifest)
            else read_record_file(path)
        )
        images.append(x)
        labels.append(y)
        total += len(y)
        if max_examples is not None and total >= max_examples:
            break
    x, y = np.concatenate(images), np.concatenate(labels)
    if max_examples is not None:
        x, y = x[:max_examples], y[:max_examples]
    return x, y


__all__: Sequence[str] = (
    "FORMAT_VERSION",
    "IMAGE_SHAPE",
    "MANIFEST",
    "balanced_subset",
    "class_counts",
    "indices_sha256",
    "batch_crop_windows",
    "crop_canvas",
    "crop_windows",
    "encoded_records",
    "image_size",
    "is_image_dataset",
    "is_labelled",
    "load_arrays",
    "load_manifest",
    "local_data_dir",
    "make_dataset",
    "manifest_json",
    "parse_example",
    "read_image_file",
    "read_record_file",
    "record_files",
    "verified_files",
    "serialize_examples",
    "split_names",
    "split_size",
    "write_records",
    "write_split",
)
