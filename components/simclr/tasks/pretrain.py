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

from simclr import train_setup
from simclr.tasks._app import dataclass_from_flags, define_dataclass_flags, run_task
from simclr.train_config import PretrainConfig

__all__ = ["PretrainConfig", "config_from_flags", "define_flags", "main", "run"]

VERTEX_TENSORBOARD_ENV = "AIP_TENSORBOARD_LOG_DIR"


def define_flags() -> None:
    """Defines one absl flag per PretrainConfig field (same name, same default)."""
    define_dataclass_flags(PretrainConfig)


def config_from_flags(flag_values: flags.FlagValues) -> PretrainConfig:
    return dataclass_from_flags(PretrainConfig, flag_values)


def run(config: PretrainConfig) -> dict[str, Any]:
    """Trains; returns the metrics written to OUTPUT_DIR/metrics.json."""
    config = with_vertex_tensorboard(config)
    if config.require_gpu:
        from simclr import devices

        devices.require_gpu()
    prepared = train_setup.prepare(config)  # flags, data, policy, outputs: before TensorFlow
    from simclr import train  # imports TensorFlow: only after the flags are known

    return train.run(config, prepared)


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
