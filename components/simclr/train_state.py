"""Pretraining's state: the encoder, head, LARS and what a checkpoint holds, with the
settings that define the trained weights (a resume must match them)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from simclr.model import build_encoder, build_projection_head, resolve_stem
from simclr.optim import LARS, GlobalLossScaleOptimizer, WarmupCosine
from simclr.train_config import Plan, PretrainConfig


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
