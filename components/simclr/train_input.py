"""Pretraining's input: a distributed iterator over per-replica batches that depends on
(seed, step) alone."""

from __future__ import annotations

import tensorflow as tf

from simclr import data
from simclr.train_config import Plan, PretrainConfig
from simclr.train_setup import training_policy


def make_input(strategy, local_dir: str, plan: Plan, config: PretrainConfig, start_step: int):
    """A distributed iterator over per-replica uint8 batches, from global step `start_step`.

    CIFAR-10 records: batches [B, 32, 32, 3] that the step's batched augmentation crops.
    Image datasets (`simclr.images`): batches of two crops per image, each drawn and cut
    in tf.data over the whole stored picture (`data.crop_windows`) and padded to one
    canvas, for `augment.augment_windows` to resize and finish on the device
    (docs/design.md, "Your own images").

    Each input pipeline holds the training images in memory (CIFAR-10: 150 MB; image
    datasets: their encoded bytes). The image order is an endless stream of epochs,
    each a stateless permutation of (seed, epoch), cut into global batches of
    `batch_size` (a batch may straddle two epochs, as the official code's
    repeat-then-batch); each pipeline gathers only its own slice of each global batch,
    then splits that into per-replica batches. So the global batch of a step (and, for
    image datasets, each crop: seeded by (seed, step, position in the global batch))
    depends on (seed, step) alone, not on the number of workers or replicas, and a
    resume just skips the images already used in its epoch.
    """
    global_batch, n = config.batch_size, plan.num_examples
    start_epoch, skip = divmod(start_step * global_batch, n)
    end_epoch = -(-plan.total_steps * global_batch // n)  # the epochs the schedule touches
    manifest = data.load_manifest(local_dir)
    images_in_records = data.is_image_dataset(manifest)
    policy = training_policy(config, plan) if images_in_records else None
    canvas = data.crop_canvas(int(manifest["stored_size"]), policy) if images_in_records else 0

    def source() -> tf.data.Dataset:
        """One element: every training image (decoded CIFAR pixels, or encoded records)."""
        if images_in_records:
            return data.encoded_records(local_dir, "train", max_examples=n).batch(n).cache()
        base = data.make_dataset(local_dir, "train", max_examples=n, cache=False)
        return base.map(lambda image, label: image).batch(n).cache()

    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        all_images = source()
        per_pipeline = global_batch // ctx.num_input_pipelines
        first = ctx.input_pipeline_id * per_pipeline

        def epoch_order(epoch):
            keys = tf.random.stateless_uniform(
                [n], tf.stack([tf.constant(config.seed, tf.int64), epoch])
            )
            return tf.data.Dataset.from_tensor_slices(tf.argsort(keys))

        order = tf.data.Dataset.range(start_epoch, end_epoch).flat_map(epoch_order).skip(skip)
        batches = order.batch(global_batch, drop_remainder=True).take(plan.total_steps - start_step)
        per_replica = ctx.get_per_replica_batch_size(global_batch)
        if images_in_records:
            crops = _crop_windows_input(batches, all_images, start_step, first, per_pipeline)
            ds = data.batch_crop_windows(crops, per_replica, canvas)
        else:
            ds = tf.data.Dataset.zip(batches, all_images.repeat()).map(
                lambda idx, images: tf.gather(images, idx[first : first + per_pipeline])
            )
            ds = ds.unbatch().batch(per_replica, drop_remainder=True)
        options = tf.data.Options()
        options.deterministic = True
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return ds.with_options(options).prefetch(tf.data.AUTOTUNE)

    def _crop_windows_input(batches, records, start, first, count):
        """Per image of this pipeline's slice: (bytes, h, w, crop seed) -> its two crops."""
        steps = tf.data.Dataset.range(start, plan.total_steps)

        def take(step, idx, record):
            encoded, heights, widths = record
            mine = idx[first : first + count]
            position = tf.range(first, first + count, dtype=tf.int64)
            # Unique per (step, position in the global batch); crop_windows adds the view.
            stream = step * global_batch + position
            seeds = tf.stack([tf.fill([count], tf.cast(config.seed, tf.int64)), stream], 1)
            return (
                tf.gather(encoded, mine),
                tf.gather(heights, mine),
                tf.gather(widths, mine),
                seeds,
            )

        ds = tf.data.Dataset.zip(steps, batches, records.repeat()).map(take).unbatch()
        return ds.map(
            lambda e, h, w, seed: data.crop_windows(e, h, w, seed, policy, canvas),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    return iter(strategy.distribute_datasets_from_function(dataset_fn))
