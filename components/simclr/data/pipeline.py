"""The tf.data pipelines over a split: `make_dataset` (parsed examples, evaluation's
centre crops for image datasets) and, for pretraining on image datasets, the undecoded
records (`encoded_records`), their two random crops (`crop_windows`) and the padded
batches of those (`batch_crop_windows`)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from simclr.augment.rng import CROP_ATTEMPTS, MIN_OBJECT_COVERED
from simclr.data.manifest import is_image_dataset, load_manifest, local_data_dir, split_size
from simclr.data.shards import record_files
from simclr.data.tfrecord import _decode_centre, _parse_batch
from simclr.errors import UserError
from simclr.images.parsing import parse_features


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


def encoded_records(data_dir: str, split: str, max_examples: int | None = None) -> Any:
    """An image dataset's split as a tf.data.Dataset of its records, undecoded:
    (image bytes, height int32, width int32), the first N in file order. Pretraining
    keeps these in memory (the encoded size, not the decoded one) and decodes and crops
    each picture when a step takes it (`crop_windows`)."""
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
    `canvas`; `augment.ops.augment_windows` resizes them on the device. Only the
    whole-picture fallback of a picture more elongated than the aspect range can
    exceed the canvas; it keeps the box's centre canvas x canvas."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    shape = tf.stack([height, width, 3])
    image = tf.reshape(image, shape)

    def view(k: int):
        key = tf.stack([seed[0], 2 * seed[1] + k])
        begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape,
            bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
            seed=key,
            min_object_covered=MIN_OBJECT_COVERED,
            aspect_ratio_range=(policy.crop_aspect_min, policy.crop_aspect_max),
            area_range=(policy.crop_area_min, policy.crop_area_max),
            max_attempts=CROP_ATTEMPTS,
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
    """Batches `crop_windows`' elements into what `augment.ops.augment_windows` takes:
    {"crops": (uint8 [B, canvas, canvas, 3]) x 2, "sizes": int32 [B, 2, 2], "flips":
    bool [B, 2]}, each crop zero-padded at its bottom and right. The padding is
    tf.data's own batch copy (padded_batch), measured ~2.4x cheaper on CPU than
    padding each crop in the map and batching."""
    side = tf.TensorShape([canvas, canvas, 3])
    batches = crops.padded_batch(
        batch_size, padded_shapes=(side, side, [2, 2], [2]), drop_remainder=True
    )
    return batches.map(
        lambda c0, c1, sizes, flips: {"crops": (c0, c1), "sizes": sizes, "flips": flips}
    )
