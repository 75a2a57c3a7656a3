"""Pretraining configuration and its up-front validation (no TensorFlow import here).

Bad flags must fail with one line before any work, and before TensorFlow's import
prints its own banner to stderr, so everything checkable without TF lives here.
"""

from __future__ import annotations

import dataclasses
import fractions
import math
from typing import Any

from simclr import knobs, storage
from simclr.errors import UserError
from simclr.knobs import knob

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

    data_dir: str = knob("", "prepare_data output (local, gs:// or s3://)")
    output_dir: str = knob(
        "", "where encoder/, config.json and metrics.json go (local, gs:// or s3://)"
    )
    policy: str = knob(
        "", "augmentation policy.json from the augment task; empty: SimCLR CIFAR-10 defaults"
    )
    tensorboard_dir: str = knob(
        "",
        "TensorBoard log URI, mirrored while training; empty: $AIP_TENSORBOARD_LOG_DIR if "
        "set, else OUTPUT_DIR/tensorboard",
    )
    checkpoint_dir: str = knob("", "checkpoint URI; empty: OUTPUT_DIR/checkpoints")
    encoder: str = knob("resnet50", "resnet18, resnet34 or resnet50", choices=ENCODERS)
    width_multiplier: float = knob(1.0, "channel width multiplier of the encoder", above=0)
    stem: str = knob(
        "auto",
        "encoder stem: auto (CIFAR 3x3 stem for image_size <= 32, else the ImageNet 7x7 "
        "stride-2 conv + 3x3 stride-2 max-pool, as google-research/simclr tf2/model.py), "
        "cifar or imagenet; recorded in OUTPUT_DIR/encoder/config.json",
        choices=STEMS,
    )
    epochs: int = knob(1000, "training epochs", above=0)
    batch_size: int = knob(1024, "global batch size (split over replicas)", above=0)
    learning_rate: float = knob(1.0, "base learning rate, before --lr_scaling", above=0)
    lr_scaling: str = knob(
        "linear", "linear (lr*B/256), sqrt (lr*sqrt(B)) or none", choices=LR_SCALINGS
    )
    warmup_epochs: float = knob(10.0, "linear warmup epochs before the cosine decay", at_least=0)
    weight_decay: float = knob(1e-6, "LARS weight decay", at_least=0)
    momentum: float = knob(0.9, "LARS momentum", at_least=0, below=1)
    temperature: float = knob(0.5, "NT-Xent temperature", above=0)
    projection_dim: int = knob(128, "output size of the projection head", above=0)
    projection_layers: int = knob(2, "layers of the projection head (2: SimCLR v1, 3: v2)", above=0)
    strategy: str = knob(
        "auto", "auto, default, one_device, mirrored, multi_worker or tpu", choices=STRATEGIES
    )
    precision: str = knob(
        "auto",
        "auto (bfloat16 on TPU and Ampere+ GPUs, float16 with loss scaling on older GPUs, "
        "float32 on CPU), float32, bfloat16 or float16",
        choices=PRECISIONS,
    )
    jit_compile: str = knob(
        "auto",
        "XLA-compile the train step: auto (on for GPU/TPU), true or false",
        choices=JIT_CHOICES,
    )
    max_train_examples: int = knob(0, "use only the first N training images; 0: all", at_least=0)
    checkpoint_every_steps: int = knob(
        500, "write a checkpoint every N steps (and at the end)", above=0
    )
    # What a preempted pod that gets no SIGTERM grace (KFP's launcher) loses at most.
    checkpoint_every_seconds: float = knob(
        600.0, "also write one when S seconds passed since the last", above=0
    )
    keep_checkpoints: int = knob(3, "how many checkpoints to keep", above=0)
    checkpoint_fallback: bool = knob(
        False,
        "if the newest checkpoint is incomplete, corrupt or non-finite, resume from the "
        "newest intact one (default: stop with an error naming it)",
    )
    extend_schedule: bool = knob(
        False,
        "allow resuming a checkpointed run with a different --epochs (the learning-rate "
        "schedule changes from that step on)",
    )
    monitor_every_epochs: int = knob(
        10, "kNN monitor every N epochs (and at the end); 0: off", at_least=0
    )
    monitor_queries: int = knob(1000, "test images used as kNN monitor queries", above=0)
    log_every_steps: int = knob(
        50, "console progress line and TensorBoard scalars every N steps", above=0
    )
    tensorboard_sync_seconds: float = knob(
        15.0, "seconds between uploads of the TensorBoard logs", above=0
    )
    cache_dir: str = knob(
        "", "local cache for gs:// / s3:// data and checkpoints; empty: ~/.cache/simclr-kfp"
    )
    num_cpu_devices: int = knob(
        0, "split the CPU into N logical devices (testing distribution); 0: off", at_least=0
    )
    require_gpu: bool = knob(False, "stop with exit 2 before any work unless TensorFlow sees a GPU")
    seed: int = knob(
        0, "seed of shuffling, augmentation and initialisation", at_least=0, below=2**31
    )

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


def validate_flags(config: PretrainConfig) -> None:
    """Checks every flag that needs no data; raises UserError naming the first bad one."""
    c = config
    _check(bool(c.data_dir), "--data_dir is required")
    _check(bool(c.output_dir), "--output_dir is required")
    knobs.check(c)
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
