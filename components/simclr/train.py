"""The SimCLR trainer: `run(PretrainConfig) -> metrics`.

Pieces, in the order `run` uses them:
  validate flags and data (train_config: before TensorFlow is imported) -> strategy and
  numerics (distribute) -> input pipeline (`make_input`) -> models and optimizer
  (`build_state`) -> compiled train step (`make_train_step`) -> loop with checkpoints
  (checkpoint), TensorBoard, kNN monitor and console progress (monitor) -> outputs.

Determinism and resume: the global batch of step t is a function of (seed, t) only
(the epoch's shuffle is seeded by (seed, epoch); each worker takes its slice of the
global batch), and the augmentation seed of a replica is a stateless function of
(seed, t, replica id). A resumed run therefore sees exactly the batches and views the
uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from typing import Any

from simclr import data, run_lock, storage
from simclr.errors import UserError
from simclr.train_config import (
    PREEMPTED_EXIT_CODE,
    Plan,
    PretrainConfig,
    make_plan,
    validate_flags,
)

__all__ = ["PREEMPTED_EXIT_CODE", "Preempted", "PretrainConfig", "run"]


# Below this many images per replica the contrastive task is nearly trivial (with 1 there
# are no negatives at all: loss 0, accuracy 1) and BatchNorm statistics are meaningless.
MIN_BATCH_PER_REPLICA = 8


class Preempted(SystemExit):
    """SIGTERM arrived: a checkpoint was written; exit with PREEMPTED_EXIT_CODE."""

    def __init__(self, step: int) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)
        self.step = step


# A replica's "checkpoint by time is due" vote: exact in float32 and < 1 (the stop vote)
# summed over up to 1023 replicas.
TIME_DUE_VOTE = 1.0 / 1024


class _StopFlag:
    """Set by SIGTERM; the loop checks it after each step."""

    def __init__(self) -> None:
        self.set = False
        self._previous: Any = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.set = True

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


# ----------------------------------------------------------------------------- setup


def _prepare(config: PretrainConfig) -> tuple[Plan, dict, Any]:
    """All checks that need no TensorFlow: flags, manifest, sizes, policy."""
    validate_flags(config)
    manifest = data.load_manifest(config.data_dir)
    plan = make_plan(config, manifest)
    policy = training_policy(config, plan)
    policy.validate()
    _check_output_locations(config, plan)
    return plan, manifest, policy


def training_policy(config: PretrainConfig, plan: Plan):
    """--policy, or the preset for the data's image size (CIFAR-10 <= 32 px, else ImageNet)."""
    from simclr.augment import default_policy, load_policy

    return load_policy(config.policy) if config.policy else default_policy(plan.image_size)


def _check_output_locations(config: PretrainConfig, plan: Plan) -> None:
    """Every place this run writes is probed before any work."""
    storage.check_writable(config.output_dir, "--output_dir")
    storage.check_writable(plan.checkpoint_dir, "--checkpoint_dir")
    storage.check_writable(plan.tensorboard_dir, "--tensorboard_dir")
    if config.cache_dir:
        storage.check_writable(config.cache_dir, "--cache_dir")


def remove_previous_outputs(output_dir: str) -> None:
    """Takes the previous run's published outputs away (metrics.json first: it marks a
    run as done) once this run is accepted, so a failure of this run never leaves them
    where a later step takes them for its own. A refused run leaves them alone."""
    storage.delete(storage.join(output_dir, "metrics.json"))
    storage.delete(storage.join(output_dir, "config.json"))
    # The SavedModel's config.json first too: it marks the export complete
    # (simclr.export.find_saved_model), and a prefix delete has no order.
    storage.delete(storage.join(output_dir, "encoder", "saved_model", "config.json"))
    storage.delete_dir(storage.join(output_dir, "encoder"))


def _numerics(config: PretrainConfig, kind: str) -> tuple[str, bool]:
    """(precision, jit) after resolving "auto" for the device kind."""
    from simclr.distribute import gpu_supports_bfloat16

    precision = config.precision
    if precision == "auto":
        if kind == "tpu" or (kind == "gpu" and gpu_supports_bfloat16()):
            precision = "bfloat16"
        else:
            precision = "float16" if kind == "gpu" else "float32"
    jit = kind != "cpu" if config.jit_compile == "auto" else config.jit_compile == "true"
    return precision, jit


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
    import tensorflow as tf

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


@dataclasses.dataclass
class TrainState:
    encoder: Any
    head: Any
    optimizer: Any
    schedule: Any
    step: Any  # tf.Variable int64: global step reached
    last: Any  # tf.Variable float32 [2]: loss and contrastive accuracy of the last step
    checkpoint: Any  # tf.train.Checkpoint of all of the above (+ run identity)


def build_state(strategy, config: PretrainConfig, plan: Plan, precision: str) -> TrainState:
    """Encoder, projection head, LARS (loss-scaled for float16) and what is checkpointed."""
    import keras
    import tensorflow as tf

    from simclr.model import build_encoder, build_projection_head
    from simclr.optim import LARS, GlobalLossScaleOptimizer, WarmupCosine

    sync_bn = strategy.num_replicas_in_sync > 1
    policy = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
    keras.utils.set_random_seed(config.seed)  # same initial weights on every run and worker
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy[precision])
    try:
        with strategy.scope():
            encoder = build_encoder(
                config.encoder,
                config.width_multiplier,
                image_size=plan.image_size,
                stem=config.stem,
                sync_batchnorm=sync_bn,
            )
            head = build_projection_head(
                int(encoder.outputs[0].shape[-1]),
                output_dim=config.projection_dim,
                num_layers=config.projection_layers,
                sync_batchnorm=sync_bn,
            )
            schedule = WarmupCosine(
                plan.base_learning_rate, max(1, plan.total_steps), plan.warmup_steps
            )
            optimizer = LARS(schedule, momentum=config.momentum, weight_decay=config.weight_decay)
            if precision == "float16":
                optimizer = GlobalLossScaleOptimizer(optimizer)
            # Built now (not at the first step) so a restore finds every slot variable.
            optimizer.build(encoder.trainable_variables + head.trainable_variables)
    finally:
        keras.config.set_dtype_policy(previous)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    identity = {
        setting_attribute(name): tf.Variable(value, trainable=False)
        for name, value in run_settings(config, plan, precision).items()
    }
    # The last step's figures, so a run restarted after it finished can still report them.
    last = tf.Variable([math.nan, math.nan], dtype=tf.float32, trainable=False)
    checkpoint = tf.train.Checkpoint(
        encoder=encoder,
        head=head,
        optimizer=optimizer,
        step=step,
        last_loss_accuracy=last,
        **identity,
    )
    return TrainState(encoder, head, optimizer, schedule, step, last, checkpoint)


# What defines the trained weights: a resume must match all of these (epochs only with
# --extend_schedule). Saved in every checkpoint beside the weights.
def run_settings(config: PretrainConfig, plan: Plan, precision: str) -> dict[str, Any]:
    import numpy as np

    from simclr.model import resolve_stem

    c = config
    return {
        "seed": np.int64(c.seed),
        "batch_size": np.int64(c.batch_size),
        "num_examples": np.int64(plan.num_examples),
        "encoder": c.encoder,
        "width_multiplier": np.float64(c.width_multiplier),
        "projection_dim": np.int64(c.projection_dim),
        "projection_layers": np.int64(c.projection_layers),
        "epochs": np.float64(c.epochs),
        "warmup_epochs": np.float64(c.warmup_epochs),
        "learning_rate": np.float64(c.learning_rate),
        "lr_scaling": c.lr_scaling,
        "weight_decay": np.float64(c.weight_decay),
        "momentum": np.float64(c.momentum),
        "temperature": np.float64(c.temperature),
        "precision": precision,
        "policy": c.policy,
        "image_size": np.int64(plan.image_size),
        "stem": resolve_stem(c.stem, plan.image_size),
    }


def setting_attribute(name: str) -> str:
    """The checkpoint attribute of a setting (the first three kept their original names)."""
    return name if name in ("seed", "batch_size", "num_examples") else f"setting_{name}"


def settings_differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """'name saved -> wanted' for each setting the checkpoint holds that differs."""
    diffs = []
    for name, value in wanted.items():
        if name not in saved:
            continue  # a checkpoint from before this setting was recorded
        old = saved[name]
        old = old.decode() if isinstance(old, bytes) else old
        if str(old) != str(value) and not (
            isinstance(value, float | int) and math.isclose(float(old), float(value))
        ):
            diffs.append(f"{name} {old} -> {value}")
    return diffs


def augmentation_seed(seed: int, step, replica_id):
    """int32 seed of (seed, global step, replica id), stateless, so a resume reproduces it."""
    import tensorflow as tf

    key = tf.stack(
        [tf.cast(seed, tf.int64), tf.cast(step, tf.int64) * 1024 + tf.cast(replica_id, tf.int64)]
    )
    return tf.random.stateless_uniform(
        [], key, minval=0, maxval=2**31 - 1, dtype=tf.int32, alg="philox"
    )


def all_finite(tensors) -> Any:
    """Scalar bool tensor: every element of every tensor is finite."""
    import tensorflow as tf

    return tf.reduce_all(
        tf.stack([tf.reduce_all(tf.math.is_finite(tf.cast(t, tf.float32))) for t in tensors])
    )


def make_train_step(strategy, state: TrainState, config: PretrainConfig, policy, jit: bool):
    """Returns train_step(iterator, step, stop) -> [mean loss, mean accuracy, stop votes,
    non-finite votes] (a replica votes non-finite if any weight or moving statistic of
    its encoder or head is NaN/inf after the step's update).

    Per replica: both views are augmented on the device, encoded in one batch, projected,
    scored with NT-Xent over the global batch; the objective is OBJECTIVE_SCALE x that
    loss (the official code's scale, which its learning rate and weight decay assume),
    scaled by 1/replicas (Keras sums the replicas' gradients). The returned loss is the
    paper's NT-Xent (mean over the 2N anchors). With one replica and `jit` the whole step
    is one XLA program; with several only the augmentation is (the rest has
    cross-replica collectives).
    """
    import tensorflow as tf

    from simclr.augment import augment_pair
    from simclr.losses import OBJECTIVE_SCALE, nt_xent_loss_and_accuracy

    replicas = strategy.num_replicas_in_sync
    loss_scaled = (
        hasattr(state.optimizer, "scale_loss") and "LossScale" in type(state.optimizer).__name__
    )
    variables = state.encoder.trainable_variables + state.head.trainable_variables
    watched = state.encoder.variables + state.head.variables  # + BatchNorm moving stats
    from simclr.augment import augment_windows

    size = int(state.encoder.inputs[0].shape[1])

    def views(batch, seed):
        if isinstance(batch, dict):  # image datasets: crops cut in tf.data (make_input)
            return augment_windows(batch, policy, seed, size)
        return augment_pair(batch, policy, seed)

    augment = tf.function(views, jit_compile=jit)

    def replica_step(images, step, stop):
        ctx = tf.distribute.get_replica_context()
        view_a, view_b = augment(
            images, augmentation_seed(config.seed, step, ctx.replica_id_in_sync_group)
        )
        with tf.GradientTape() as tape:
            z = state.head(
                state.encoder(tf.concat([view_a, view_b], 0), training=True), training=True
            )
            z_a, z_b = tf.split(z, 2, axis=0)
            loss, accuracy = nt_xent_loss_and_accuracy(z_a, z_b, config.temperature)
            scaled = OBJECTIVE_SCALE * loss / replicas
            if loss_scaled:
                scaled = state.optimizer.scale_loss(scaled)
        grads = tape.gradient(scaled, variables)
        state.optimizer.apply_gradients(zip(grads, variables, strict=True))
        # After the update: a non-finite gradient that was applied (not skipped by the
        # float16 loss scale) shows in the weights; BatchNorm moving stats are included.
        with tf.control_dependencies([loss]):
            bad = 1.0 - tf.cast(all_finite(watched), tf.float32)
        return tf.stack([loss / replicas, accuracy / replicas, stop, bad])

    if jit and replicas == 1:
        replica_step = tf.function(replica_step, jit_compile=True)

    @tf.function
    def train_step(iterator, step, stop):
        per_replica = strategy.run(replica_step, args=(next(iterator), step, stop))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return train_step


# ----------------------------------------------------------------------------- loop


@dataclasses.dataclass
class _Progress:
    loss: float = float("nan")
    accuracy: float = float("nan")
    knn_top1: float | None = None
    steps_this_session: int = 0


class Trainer:
    """Holds the run's objects; `fit()` is the training loop."""

    def __init__(self, config: PretrainConfig, plan: Plan, manifest: dict, policy) -> None:
        import tensorflow as tf

        from simclr import distribute
        from simclr.checkpoint import Checkpointer
        from simclr.monitor import KnnMonitor, SummaryLogger, Throughput, log

        self.config, self.plan, self.policy = config, plan, policy
        self.lock: run_lock.RunLock | None = None  # set by run(): checked before each save
        distribute.configure_cpu_devices(config.num_cpu_devices)
        self.strategy_name = distribute.resolve_strategy_name(config.strategy)
        self.strategy = distribute.make_strategy(self.strategy_name)
        replicas = self.strategy.num_replicas_in_sync
        if config.batch_size % replicas:
            raise UserError(
                f"--batch_size {config.batch_size} is not divisible by the {replicas} replicas"
            )
        if config.batch_size // replicas < MIN_BATCH_PER_REPLICA:
            raise UserError(
                f"--batch_size {config.batch_size} gives {config.batch_size // replicas} images "
                f"per replica ({replicas} replicas): NT-Xent needs at least "
                f"{MIN_BATCH_PER_REPLICA} per replica to have negatives"
            )
        self.chief = distribute.is_chief(self.strategy)
        self.precision, self.jit = _numerics(config, distribute.device_kind())
        self.local_data = data.local_data_dir(config.data_dir, config.cache_dir or None)
        self.state = build_state(self.strategy, config, plan, self.precision)
        self.checkpointer = Checkpointer(
            self.state.checkpoint,
            plan.checkpoint_dir,
            keep=config.keep_checkpoints,
            chief=self.chief,
            cache_dir=config.cache_dir or None,
            fallback=config.checkpoint_fallback,
        )
        self.summaries = SummaryLogger(
            plan.tensorboard_dir, sync_seconds=config.tensorboard_sync_seconds, enabled=self.chief
        )
        self.knn = (
            KnnMonitor(self.local_data, manifest, config.monitor_queries)
            if config.monitor_every_epochs and data.is_labelled(manifest)
            else None
        )
        self.throughput = Throughput(config.batch_size)
        self.progress = _Progress()
        self.stop = _StopFlag()
        self.last_save_time = time.monotonic()
        self.log = log if self.chief else (lambda message: None)
        self._tf = tf
        self.log(
            f"strategy {self.strategy_name} ({type(self.strategy).__name__}, {replicas} replicas), precision "
            f"{self.precision}, jit {self.jit}, {plan.num_examples} images, "
            f"{plan.steps_per_epoch:.4g} steps/epoch, {plan.total_steps} steps"
        )

    # -- checkpoints

    def check_resume_settings(self, path: str) -> None:
        """Refuses (one line listing them) a resume whose training-defining settings differ."""
        import tensorflow as tf

        reader = tf.train.load_checkpoint(path)
        keys = reader.get_variable_to_shape_map()
        wanted = run_settings(self.config, self.plan, self.precision)
        saved = {
            name: reader.get_tensor(key)
            for name in wanted
            if (key := f"{setting_attribute(name)}/.ATTRIBUTES/VARIABLE_VALUE") in keys
        }
        diffs = settings_differences(saved, wanted)
        if self.config.extend_schedule:
            diffs = [d for d in diffs if not d.startswith("epochs ")]
        if diffs:
            hint = " (--extend_schedule allows a new --epochs)" if "epochs" in str(diffs) else ""
            raise UserError(
                f"--checkpoint_dir {self.plan.checkpoint_dir} holds a run trained with other "
                f"settings: {'; '.join(diffs)}: use the same flags or a new --output_dir{hint}"
            )

    def restore(self) -> int:
        # The settings are checked on the checkpoint actually restored (after any
        # --checkpoint_fallback past a corrupt newer one), before it is restored.
        path = self.checkpointer.restore_latest(check=self.check_resume_settings)
        if path is None:
            return 0
        step = int(self.state.step.numpy())
        self.progress.loss, self.progress.accuracy = (float(v) for v in self.state.last.numpy())
        self.log(f"resumed from {path} at step {step}")
        return step

    def save(self, step: int) -> None:
        if self.lock is not None:
            self.lock.check()  # a run that lost its directory writes nothing more there
        self.state.step.assign(step)
        self.state.last.assign([self.progress.loss, self.progress.accuracy])
        self.checkpointer.save(step)
        self.summaries.sync()
        self.last_save_time = time.monotonic()

    # -- monitors

    def write_views(self, step: int) -> None:
        from simclr.augment import augment_pair
        from simclr.monitor import view_grid

        if self.knn is None or not self.chief:
            return
        images = self.knn.bank_x[:8]
        seed = augmentation_seed(self.config.seed, step, 0)
        view_a, view_b = augment_pair(self._tf.constant(images), self.policy, seed)
        self.summaries.images(
            step,
            "augmented_views",
            view_grid(images, view_a, view_b),
            "rows: original | view a | view b",
        )

    def run_monitor(self, step: int, epoch: int) -> None:
        if self.knn is None:
            return
        started = time.perf_counter()
        top1 = self.knn(self.state.encoder)
        self.progress.knn_top1 = top1
        self.summaries.scalars(step, {"monitor/knn_top1": top1})
        self.write_views(step)
        self.summaries.sync()
        self.log(
            f"epoch {epoch} step {step}: kNN top-1 {top1:.4f} ({self.knn.description}, "
            f"{time.perf_counter() - started:.1f}s)"
        )

    def _log_progress(self, step: int) -> None:
        from simclr.losses import OBJECTIVE_SCALE
        from simclr.monitor import format_eta

        plan, p = self.plan, self.progress
        lr = float(self.state.schedule(step - 1))  # the rate this step was taken with
        scalars = {
            # train/loss: the paper's NT-Xent (mean over the 2N anchors); train/objective:
            # what is minimised, OBJECTIVE_SCALE x that (the official loss_a + loss_b).
            "train/loss": p.loss,
            "train/objective": OBJECTIVE_SCALE * p.loss,
            "train/contrastive_accuracy": p.accuracy,
            "train/learning_rate": lr,
        }
        line = (
            f"epoch {min(plan.epochs_completed(step - 1) + 1, self.config.epochs)}/"
            f"{self.config.epochs} step {step}/{plan.total_steps} loss (paper's mean) "
            f"{p.loss:.4f} acc {p.accuracy:.3f} lr {lr:.4g}"
        )
        measured = self.throughput.take()  # None at the first step (compilation)
        if measured is not None:
            rate, step_time = measured
            scalars.update({"perf/images_per_second": rate, "perf/step_time_seconds": step_time})
            line += f" {rate:.1f} img/s eta {format_eta((plan.total_steps - step) * step_time)}"
        self.summaries.scalars(step, scalars)
        self.log(line)

    def fit(self) -> None:
        plan, config = self.plan, self.config
        start = self.restore()
        if self.chief:
            remove_previous_outputs(config.output_dir)
        if start >= plan.total_steps:
            self.log(f"checkpoint is at step {start}: nothing left to train")
            self.final_step = start
            self.run_monitor(start, plan.epochs_completed(start))
            return
        iterator = make_input(self.strategy, self.local_data, plan, config, start)
        train_step = make_train_step(self.strategy, self.state, config, self.policy, self.jit)
        if start == 0:
            self.run_monitor(0, 0)  # the random-init baseline, and the first view pairs
        self.stop.install()
        step = start
        try:
            while step < plan.total_steps:
                values = self._guarded_step(train_step, iterator, step)
                loss, accuracy, stop_votes, bad_votes = (float(v) for v in values.numpy())
                self._check_finite(step + 1, loss, accuracy, bad_votes)
                step += 1
                self.progress.loss, self.progress.accuracy = loss, accuracy
                self.progress.steps_this_session += 1
                self.throughput.step_done()
                self._after_step(step, stop_votes >= 1, checkpoint_due=stop_votes > 0)
        finally:
            self.stop.uninstall()
        self.final_step = step

    def _guarded_step(self, train_step, iterator, step: int):
        """One step; a record that fails its CRC or breaks off (a shard damaged after the
        manifest's sha256 was checked, or one without a sha256) is one line, not tf.data's
        traceback. Nothing of the step is saved: the last checkpoint stays the good one."""
        tf = self._tf
        try:
            return train_step(iterator, tf.constant(step, tf.int64), tf.constant(self._vote()))
        except tf.errors.DataLossError as err:
            reason = err.message.splitlines()[0] if err.message else type(err).__name__
            raise UserError(
                f"{self.config.data_dir}: a training shard is corrupt at step {step + 1} "
                f"({reason}); re-run prepare_data or re-copy the data"
            ) from None

    def _vote(self) -> float:
        """This process's vote, summed over all replicas by the step: 1 to stop (SIGTERM),
        TIME_DUE_VOTE when --checkpoint_every_seconds has passed. Every worker sees the same
        sum, so all of them save together (a checkpoint is collective) even if their clocks
        disagree."""
        due = time.monotonic() - self.last_save_time >= self.config.checkpoint_every_seconds
        return float(self.stop.set) + (TIME_DUE_VOTE if due else 0.0)

    def _check_finite(self, step: int, loss: float, accuracy: float, bad_votes: float) -> None:
        """Stops before anything of a diverged step is checkpointed or published."""
        if math.isfinite(loss) and math.isfinite(accuracy) and bad_votes == 0:
            return
        what = f"loss {loss}" if not math.isfinite(loss) else "weights or BatchNorm statistics"
        raise UserError(
            f"training diverged at step {step}: non-finite {what}; nothing of this step is "
            f"saved, the last checkpoint in {self.plan.checkpoint_dir} (finite) is kept "
            "(lower --learning_rate?)"
        )

    def _after_step(self, step: int, stop: bool, checkpoint_due: bool = False) -> None:
        plan, config = self.plan, self.config
        if step % config.log_every_steps == 0 or step == plan.total_steps or step == 1:
            self._log_progress(step)
        if stop:
            self.save(step)
            self.log(
                f"SIGTERM: checkpoint saved at step {step}; exiting with code {PREEMPTED_EXIT_CODE}"
            )
            raise Preempted(step)
        epoch = plan.epochs_completed(step)
        epoch_done = epoch > plan.epochs_completed(step - 1)
        if step % config.checkpoint_every_steps == 0 or step == plan.total_steps or checkpoint_due:
            self.save(step)
        if (
            epoch_done
            and config.monitor_every_epochs
            and (epoch % config.monitor_every_epochs == 0 or step == plan.total_steps)
        ):
            self.run_monitor(step, epoch)

    # -- outputs

    def write_outputs(self, wall_seconds: float) -> dict[str, Any]:
        from simclr.export import export_saved_model
        from simclr.model import save_encoder

        config, plan, p = self.config, self.plan, self.progress
        metrics: dict[str, Any] = {
            "final_loss": p.loss,  # the paper's NT-Xent; the objective is OBJECTIVE_SCALE x it
            "final_contrastive_accuracy": p.accuracy,
            "steps": self.final_step,
            "steps_this_run": p.steps_this_session,
            "epochs": self.final_step / plan.steps_per_epoch,  # a little over --epochs: ceil
            "images_per_second": self.throughput.overall(),
            "wall_seconds": wall_seconds,
            "num_examples": plan.num_examples,
            "global_batch_size": config.batch_size,
            "replicas": self.strategy.num_replicas_in_sync,
            "strategy": self.strategy_name,
            "precision": self.precision,
            "jit_compile": self.jit,
        }
        if p.knn_top1 is not None:
            metrics["knn_top1"] = p.knn_top1
        self._check_publishable(metrics)
        if not self.chief:
            return metrics
        resolved = {
            **config.to_dict(),
            **dataclasses.asdict(plan),
            "precision": self.precision,
            "jit_compile": self.jit,
            "strategy_resolved": self.strategy_name,
        }
        encoder_dir = storage.join(config.output_dir, "encoder")
        save_encoder(self.state.encoder, encoder_dir, config={"pretrain": resolved})
        # The servable export beside encoder.keras: staged and published whole by
        # export_saved_model (its config.json last), all before metrics.json, which marks
        # the run's outputs complete; remove_previous_outputs takes it away with encoder/.
        started = time.monotonic()
        served = export_saved_model(self.state.encoder, {"pretrain": resolved}, encoder_dir)
        metrics["saved_model_bytes"] = served["size_bytes"]
        metrics["saved_model_seconds"] = time.monotonic() - started
        storage.write_json(storage.join(config.output_dir, "config.json"), resolved)
        self.summaries.close()
        storage.write_json(storage.join(config.output_dir, "metrics.json"), metrics)  # last
        return metrics

    def _check_publishable(self, metrics: dict[str, Any]) -> None:
        """Never publish non-finite figures or weights (e.g. a resumed, poisoned checkpoint)."""
        names = ("final_loss", "final_contrastive_accuracy")
        bad = [k for k in names if not math.isfinite(metrics[k])]
        if self.final_step > 0 and bad:
            raise UserError(
                f"not publishing: {', '.join(bad)} non-finite at step {self.final_step}"
            )
        if not bool(all_finite(self.state.encoder.variables + self.state.head.variables)):
            raise UserError(
                f"not publishing: the encoder holds non-finite weights at step {self.final_step}"
            )

    def close(self) -> None:
        self.summaries.close()
        self.checkpointer.close()


def run(config: PretrainConfig) -> dict[str, Any]:
    """Pretrains; returns (and writes) the metrics. Raises UserError on bad input, and
    `Preempted` (SystemExit with PREEMPTED_EXIT_CODE) after a SIGTERM checkpoint."""
    started = time.perf_counter()
    plan, manifest, policy = _prepare(config)
    # The run directory is this run's from here on (workers of a multi-worker run share
    # the chief's): a second writer is refused before any work, see run_lock.py.
    chief = run_lock.is_chief_task(config.strategy)
    with run_lock.hold(config.output_dir, enabled=chief, log=_lock_log) as lock:
        trainer = Trainer(config, plan, manifest, policy)
        trainer.lock = lock
        try:
            trainer.fit()
            if lock is not None:
                lock.check()
            metrics = trainer.write_outputs(time.perf_counter() - started)
        finally:
            trainer.close()
    trainer.log(f"done: {metrics}")
    return metrics


def _lock_log(message: str) -> None:
    print(f"[pretrain] {message}", flush=True)
