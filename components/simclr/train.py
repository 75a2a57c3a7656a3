"""The SimCLR trainer: `run(PretrainConfig) -> metrics`.

Pieces, in the order `run` uses them:
  validate flags and data (train_config, train_setup: no TensorFlow) -> strategy and
  numerics (distribute) -> input pipeline (train_input) -> models and optimizer
  (train_state) -> compiled train step (train_step) -> loop with checkpoints
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
import time
from typing import Any

import tensorflow as tf

from simclr import data, distribute, run_lock, storage
from simclr.augment.ops import augment_pair
from simclr.checkpoint import Checkpointer
from simclr.errors import UserError
from simclr.export import export_saved_model
from simclr.losses import OBJECTIVE_SCALE
from simclr.model import save_encoder
from simclr.monitor import KnnMonitor, SummaryLogger, Throughput, format_eta, log, view_grid
from simclr.train_config import PREEMPTED_EXIT_CODE, Plan, PretrainConfig
from simclr.train_input import make_input
from simclr.train_setup import (
    MIN_BATCH_PER_REPLICA,
    TIME_DUE_VOTE,
    Preempted,
    Prepared,
    StopFlag,
    prepare,
    remove_previous_outputs,
)
from simclr.train_state import build_state, run_settings, setting_attribute, settings_differences
from simclr.train_step import all_finite, augmentation_seed, make_train_step

__all__ = ["PREEMPTED_EXIT_CODE", "Preempted", "PretrainConfig", "run"]


def numerics(config: PretrainConfig, kind: str) -> tuple[str, bool]:
    """(precision, jit) after resolving "auto" for the device kind."""
    precision = config.precision
    if precision == "auto":
        if kind == "tpu" or (kind == "gpu" and distribute.gpu_supports_bfloat16()):
            precision = "bfloat16"
        else:
            precision = "float16" if kind == "gpu" else "float32"
    jit = kind != "cpu" if config.jit_compile == "auto" else config.jit_compile == "true"
    return precision, jit


@dataclasses.dataclass
class _Progress:
    loss: float = float("nan")
    accuracy: float = float("nan")
    knn_top1: float | None = None
    steps_this_session: int = 0


class Trainer:
    """Holds the run's objects; `fit()` is the training loop."""

    def __init__(self, config: PretrainConfig, plan: Plan, manifest: dict, policy) -> None:
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
        self.precision, self.jit = numerics(config, distribute.device_kind())
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
        self.stop = StopFlag()
        self.last_save_time = time.monotonic()
        self.log = log if self.chief else (lambda message: None)
        self.log(
            f"strategy {self.strategy_name} ({type(self.strategy).__name__}, {replicas} replicas), precision "
            f"{self.precision}, jit {self.jit}, {plan.num_examples} images, "
            f"{plan.steps_per_epoch:.4g} steps/epoch, {plan.total_steps} steps"
        )

    # -- checkpoints

    def check_resume_settings(self, path: str) -> None:
        """Refuses (one line listing them) a resume whose training-defining settings differ."""
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
        if self.knn is None or not self.chief:
            return
        images = self.knn.bank_x[:8]
        seed = augmentation_seed(self.config.seed, step, 0)
        view_a, view_b = augment_pair(tf.constant(images), self.policy, seed)
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


def run(config: PretrainConfig, prepared: Prepared | None = None) -> dict[str, Any]:
    """Pretrains; returns (and writes) the metrics. Raises UserError on bad input, and
    `Preempted` (SystemExit with PREEMPTED_EXIT_CODE) after a SIGTERM checkpoint.
    `prepared`: `train_setup.prepare(config)` when the caller already ran it."""
    started = time.perf_counter()
    plan, manifest, policy = prepared or prepare(config)
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
