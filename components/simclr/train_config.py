"""Pretraining configuration and its up-front validation (no TensorFlow import here).

Bad flags must fail with one line before any work, and before TensorFlow's import
prints its own banner to stderr, so everything checkable without TF lives here.
"""

from __future__ import annotations

import dataclasses
import fractions
import math
from typing import Any

from simclr import storage
from simclr.errors import UserError

ENCODERS = ("resnet18", "resnet34", "resnet50")
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
JIT_CHOICES = ("auto", "true", "false")
LR_SCALINGS = ("linear", "sqrt", "none")
STEMS = ("auto", "cifar", "imagenet")  # = simclr.model.STEMS (no Keras import here)
# Exit code of a run stopped by SIGTERM after writing its checkpoint (128 + SIGTERM, as
# a shell reports it): non-zero so KFP/Vertex retry the task, which then resumes.
PREEMPTED_EXIT_CODE = 143


@dataclasses.dataclass
class PretrainConfig:
    """Every flag of `python -m simclr.tasks.pretrain` (same names); SimCLR CIFAR-10 defaults."""

    data_dir: str = ""
    output_dir: str = ""
    policy: str = ""  # augment's policy.json; "" = AugmentPolicy() defaults
    tensorboard_dir: str = ""  # "" = OUTPUT_DIR/tensorboard
    checkpoint_dir: str = ""  # "" = OUTPUT_DIR/checkpoints
    encoder: str = "resnet50"
    width_multiplier: float = 1.0
    stem: str = "auto"  # auto: CIFAR stem for image_size <= 32, else ImageNet (tf2/model.py)
    epochs: int = 1000
    batch_size: int = 1024  # global batch
    learning_rate: float = 1.0  # before --lr_scaling
    lr_scaling: str = "linear"  # linear: lr*B/256, sqrt: lr*sqrt(B), none
    warmup_epochs: float = 10.0
    weight_decay: float = 1e-6
    momentum: float = 0.9
    temperature: float = 0.5
    projection_dim: int = 128
    projection_layers: int = 2
    strategy: str = "auto"
    precision: str = "auto"  # auto: bfloat16 on TPU/GPU (float16 before Ampere), float32 on CPU
    jit_compile: str = "auto"  # auto: on for GPU/TPU, off on CPU
    max_train_examples: int = 0  # 0 = the whole train split
    checkpoint_every_steps: int = 500
    # Also checkpoint when this much time has passed since the last one: what a preempted
    # pod that gets no SIGTERM grace (KFP's launcher) loses at most.
    checkpoint_every_seconds: float = 600.0
    keep_checkpoints: int = 3
    # An index naming missing files is an error; true: resume from the newest complete one.
    checkpoint_fallback: bool = False
    # Resuming with other --epochs is refused unless this says the schedule is meant to change.
    extend_schedule: bool = False
    monitor_every_epochs: int = 10  # kNN monitor; 0 = off
    monitor_queries: int = 1000  # test images used as kNN queries
    log_every_steps: int = 50
    tensorboard_sync_seconds: float = 15.0
    cache_dir: str = ""  # local cache for gs:// data and checkpoints; "" = default
    num_cpu_devices: int = 0  # >1 splits the CPU into logical devices (tests, debugging)
    require_gpu: bool = False  # stop (exit 2) unless TensorFlow sees a GPU: no CPU fallback
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the flags and the manifest resolve to (all derived numbers in one place).

    The schedule is google-research/simclr's: training runs over an endless stream of
    epochs (each its own seeded shuffle) cut into full global batches, for
    ceil(examples * epochs / batch) steps (CIFAR-10 at batch 1024, 1000 epochs: 48,829),
    so a batch may straddle two epochs and the last step ends a little into the next one.
    """

    num_examples: int
    global_batch_size: int
    steps_per_epoch: float  # num_examples / global_batch_size (not a whole number in general)
    total_steps: int
    warmup_steps: int
    base_learning_rate: float  # after scaling
    checkpoint_dir: str
    tensorboard_dir: str
    image_size: int = 32  # the data's training resolution (manifest image_size)

    def epochs_completed(self, step: int) -> int:
        """Whole epochs of the image stream consumed after `step` steps."""
        return step * self.global_batch_size // self.num_examples


def steps_for_epochs(epochs: float, num_examples: int, batch_size: int) -> int:
    """ceil(epochs * examples / batch): the steps that cover `epochs` passes (as the
    official code counts them), in exact arithmetic for whole and decimal epochs."""
    return math.ceil(fractions.Fraction(str(epochs)) * num_examples / batch_size)


def scaled_learning_rate(learning_rate: float, batch_size: int, scaling: str) -> float:
    """The base learning rate for the global batch: linear lr*B/256 (SimCLR's LARS
    rule), sqrt lr*sqrt(B) (the official code's, for small batches), or none."""
    if scaling == "linear":
        return learning_rate * batch_size / 256.0
    if scaling == "sqrt":
        return learning_rate * math.sqrt(batch_size)
    if scaling == "none":
        return learning_rate
    raise ValueError(f"learning-rate scaling must be one of {', '.join(LR_SCALINGS)}")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def _choice(config: PretrainConfig, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(config, name)
    _check(value in choices, f"--{name} must be one of {', '.join(choices)}, got {value!r}")


def validate_flags(config: PretrainConfig) -> None:
    """Checks every flag that needs no data; raises UserError naming the first bad one."""
    c = config
    _check(bool(c.data_dir), "--data_dir is required")
    _check(bool(c.output_dir), "--output_dir is required")
    _choice(c, "encoder", ENCODERS)
    _choice(c, "strategy", STRATEGIES)
    _choice(c, "precision", PRECISIONS)
    _choice(c, "jit_compile", JIT_CHOICES)
    _choice(c, "lr_scaling", LR_SCALINGS)
    _choice(c, "stem", STEMS)
    positive = {
        "width_multiplier": c.width_multiplier, "epochs": c.epochs, "batch_size": c.batch_size,
        "learning_rate": c.learning_rate, "temperature": c.temperature,
        "projection_dim": c.projection_dim, "projection_layers": c.projection_layers,
        "checkpoint_every_steps": c.checkpoint_every_steps,
        "checkpoint_every_seconds": c.checkpoint_every_seconds,
        "keep_checkpoints": c.keep_checkpoints, "log_every_steps": c.log_every_steps,
        "monitor_queries": c.monitor_queries,
        "tensorboard_sync_seconds": c.tensorboard_sync_seconds,
    }  # fmt: skip
    for name, value in positive.items():
        _check(math.isfinite(value) and value > 0, f"--{name} must be > 0, got {value}")
    non_negative = {
        "warmup_epochs": c.warmup_epochs, "weight_decay": c.weight_decay,
        "max_train_examples": c.max_train_examples,
        "monitor_every_epochs": c.monitor_every_epochs, "num_cpu_devices": c.num_cpu_devices,
        "seed": c.seed,
    }  # fmt: skip
    for name, value in non_negative.items():
        _check(math.isfinite(value) and value >= 0, f"--{name} must be >= 0, got {value}")
    _check(0 <= c.momentum < 1, f"--momentum must be in [0, 1), got {c.momentum}")
    _check(c.seed < 2**31, f"--seed must be < 2**31, got {c.seed}")
    if c.policy:
        _check(storage.exists(c.policy), f"--policy file not found: {c.policy}")
    if c.cache_dir:
        _check(
            not storage.is_remote(c.cache_dir),
            f"--cache_dir must be a local path, got {c.cache_dir}",
        )


def make_plan(config: PretrainConfig, manifest: dict[str, Any]) -> Plan:
    """Resolves sizes, steps and directories from the flags and the data's manifest."""
    c = config
    try:
        available = int(manifest["splits"]["train"]["num_examples"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{c.data_dir}: manifest has no train split") from None
    num_examples = min(available, c.max_train_examples) if c.max_train_examples else available
    _check(
        c.batch_size <= num_examples,
        f"--batch_size {c.batch_size} is larger than the {num_examples} training examples "
        "(lower --batch_size or raise --max_train_examples)",
    )
    total_steps = steps_for_epochs(c.epochs, num_examples, c.batch_size)
    warmup_steps = steps_for_epochs(c.warmup_epochs, num_examples, c.batch_size)
    return Plan(
        num_examples=num_examples,
        global_batch_size=c.batch_size,
        steps_per_epoch=num_examples / c.batch_size,
        total_steps=total_steps,
        # Clamped: a short run with the default 10 warmup epochs warms up all the way.
        warmup_steps=min(total_steps, warmup_steps),
        base_learning_rate=scaled_learning_rate(c.learning_rate, c.batch_size, c.lr_scaling),
        checkpoint_dir=c.checkpoint_dir or storage.join(c.output_dir, "checkpoints"),
        tensorboard_dir=c.tensorboard_dir or storage.join(c.output_dir, "tensorboard"),
        image_size=int(manifest.get("image_size", 32)),
    )
