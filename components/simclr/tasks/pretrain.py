"""`python -m simclr.tasks.pretrain`: SimCLR pretraining of an encoder and projection head.

Writes OUTPUT_DIR/encoder/ (uint8 images in, representation out), OUTPUT_DIR/config.json
(the resolved configuration) and, last, OUTPUT_DIR/metrics.json. Checkpoints go to
--checkpoint_dir (default OUTPUT_DIR/checkpoints); started again with the same flags
it resumes from the newest one. On SIGTERM it checkpoints and exits with code 143.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from absl import flags

from simclr.tasks._app import dataclass_from_flags, define_dataclass_flags, run_task
from simclr.train_config import (
    JIT_CHOICES,
    LR_SCALINGS,
    PRECISIONS,
    STRATEGIES,
    PretrainConfig,
)

__all__ = ["PretrainConfig", "config_from_flags", "define_flags", "main", "run"]

VERTEX_TENSORBOARD_ENV = "AIP_TENSORBOARD_LOG_DIR"

_HELP = {
    "data_dir": "prepare_data output (local, gs:// or s3://)",
    "output_dir": "where encoder/, config.json and metrics.json go (local, gs:// or s3://)",
    "policy": "augmentation policy.json from the augment task; empty: SimCLR CIFAR-10 defaults",
    "tensorboard_dir": "TensorBoard log URI, mirrored while training; empty: "
    "$AIP_TENSORBOARD_LOG_DIR if set, else OUTPUT_DIR/tensorboard",
    "checkpoint_dir": "checkpoint URI; empty: OUTPUT_DIR/checkpoints",
    "encoder": "resnet18, resnet34 or resnet50 (CIFAR stem)",
    "width_multiplier": "channel width multiplier of the encoder",
    "epochs": "training epochs",
    "batch_size": "global batch size (split over replicas)",
    "learning_rate": "base learning rate, before --lr_scaling",
    "lr_scaling": "linear (lr*B/256), sqrt (lr*sqrt(B)) or none",
    "warmup_epochs": "linear warmup epochs before the cosine decay",
    "weight_decay": "LARS weight decay",
    "momentum": "LARS momentum",
    "temperature": "NT-Xent temperature",
    "projection_dim": "output size of the projection head",
    "projection_layers": "layers of the projection head (2: SimCLR v1, 3: v2)",
    "strategy": "auto, default, one_device, mirrored, multi_worker or tpu",
    "precision": "auto (bfloat16 on TPU and Ampere+ GPUs, float16 with loss scaling on older "
    "GPUs, float32 on CPU), float32, bfloat16 or float16",
    "jit_compile": "XLA-compile the train step: auto (on for GPU/TPU), true or false",
    "max_train_examples": "use only the first N training images; 0: all",
    "checkpoint_every_steps": "write a checkpoint every N steps (and at the end)",
    "checkpoint_every_seconds": "also write one when S seconds passed since the last",
    "keep_checkpoints": "how many checkpoints to keep",
    "checkpoint_fallback": "if the newest checkpoint is incomplete, corrupt or non-finite, "
    "resume from the newest intact one (default: stop with an error naming it)",
    "extend_schedule": "allow resuming a checkpointed run with a different --epochs "
    "(the learning-rate schedule changes from that step on)",
    "monitor_every_epochs": "kNN monitor every N epochs (and at the end); 0: off",
    "monitor_queries": "test images used as kNN monitor queries",
    "log_every_steps": "console progress line and TensorBoard scalars every N steps",
    "tensorboard_sync_seconds": "seconds between uploads of the TensorBoard logs",
    "cache_dir": "local cache for gs:// / s3:// data and checkpoints; empty: ~/.cache/simclr-kfp",
    "num_cpu_devices": "split the CPU into N logical devices (testing distribution); 0: off",
    "require_gpu": "stop with exit 2 before any work unless TensorFlow sees a GPU",
    "seed": "seed of shuffling, augmentation and initialisation",
}
_ENUMS = {
    "strategy": STRATEGIES,
    "precision": PRECISIONS,
    "jit_compile": JIT_CHOICES,
    "lr_scaling": LR_SCALINGS,
}


def define_flags() -> None:
    """Defines one absl flag per PretrainConfig field (same name, same default)."""
    define_dataclass_flags(PretrainConfig, _HELP, enums=_ENUMS)


def config_from_flags(flag_values: flags.FlagValues) -> PretrainConfig:
    return dataclass_from_flags(PretrainConfig, flag_values)


def run(config: PretrainConfig) -> dict[str, Any]:
    """Trains; returns the metrics written to OUTPUT_DIR/metrics.json."""
    config = with_vertex_tensorboard(config)
    if config.require_gpu:
        from simclr import devices

        devices.require_gpu()
    from simclr import train  # imports TensorFlow: only after the flags are known

    return train.run(config)


def with_vertex_tensorboard(config: PretrainConfig, env=None) -> PretrainConfig:
    """Logs go to AIP_TENSORBOARD_LOG_DIR (set by a Vertex AI CustomJob with a TensorBoard
    instance) when it is set and --tensorboard_dir is not."""
    log_dir = (os.environ if env is None else env).get(VERTEX_TENSORBOARD_ENV, "")
    if log_dir and not config.tensorboard_dir:
        return dataclasses.replace(config, tensorboard_dir=log_dir)
    return config


def main(argv: list[str] | None = None) -> None:
    run_task(define_flags, config_from_flags, run, argv)


if __name__ == "__main__":
    main()
