"""Pretraining throughput beside its ceiling, the encoder's own forward+backward.

For each encoder: images/s of the full training step (both views augmented on the
device, encoder, projection head, NT-Xent, LARS update: the trainer's own step
function), images/s of the encoder alone doing forward+backward on the same 2B views
(plain tf.GradientTape; no augmentation, head, loss or optimizer), and their ratio
(target: >= 0.85). Synthetic uint8 images, so no data is needed. Each figure is the
best of a few interleaved rounds.

Standalone: `python -m simclr.bench.train --encoders=resnet50 --batch_size=512
--precision=bfloat16 --jit_compile=true` (what scripts/gpu_bench.sh runs).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from simclr import distribute, train, train_state, train_step
from simclr.augment import AugmentPolicy
from simclr.train_config import Plan, PretrainConfig

CPU_BATCH = 32
QUICK_BATCH = 16


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    quick = bool(getattr(args, "quick", False))
    encoders = getattr(args, "encoders", None) or ("resnet18" if quick else "resnet18,resnet50")
    if isinstance(encoders, str):
        encoders = [e.strip() for e in encoders.split(",") if e.strip()]
    return {
        "encoders": list(encoders),
        "batch_size": getattr(args, "batch_size", None) or (QUICK_BATCH if quick else CPU_BATCH),
        "steps": getattr(args, "steps", None) or (3 if quick else 6),
        "warmup": getattr(args, "warmup_steps", None) or 2,
        "precision": getattr(args, "precision", None) or "auto",
        "jit_compile": getattr(args, "jit_compile", None) or "auto",
        "width_multiplier": getattr(args, "width_multiplier", None) or 1.0,
        "rounds": 1 if quick else 3,
    }


def _time_steps(step_fn, warmup: int, steps: int) -> float:
    """Seconds per step after `warmup` untimed steps (each step's result is fetched)."""
    for _ in range(warmup):
        step_fn()
    start = time.perf_counter()
    for _ in range(steps):
        step_fn()
    return (time.perf_counter() - start) / steps


def _pretrain_step(encoder_name: str, s: dict[str, Any]):
    """(step_fn, state, precision, jit) of the real trainer on synthetic images."""
    config = PretrainConfig(
        data_dir="-",
        output_dir="-",
        encoder=encoder_name,
        width_multiplier=s["width_multiplier"],
        batch_size=s["batch_size"],
        precision=s["precision"],
        jit_compile=s["jit_compile"],
        epochs=1,
    )
    plan = Plan(
        num_examples=s["batch_size"] * 1000,
        global_batch_size=s["batch_size"],
        steps_per_epoch=1000,
        total_steps=1000,
        warmup_steps=10,
        base_learning_rate=1.0,
        checkpoint_dir="-",
        tensorboard_dir="-",
    )
    strategy = tf.distribute.get_strategy()
    precision, jit = train.numerics(config, distribute.device_kind())
    state = train_state.build_state(strategy, config, plan, precision)
    step = train_step.make_train_step(strategy, state, config, AugmentPolicy(), jit)
    images = np.random.default_rng(0).integers(0, 256, (s["batch_size"], 32, 32, 3), np.uint8)
    iterator = iter(
        strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensors(images).repeat().prefetch(2)
        )
    )
    counter = {"step": 0}

    def step_fn():
        counter["step"] += 1
        step(iterator, tf.constant(counter["step"], tf.int64), tf.constant(0.0)).numpy()

    return step_fn, state, precision, jit


def _encoder_fwd_bwd(encoder, batch_size: int, jit: bool):
    """Forward+backward of the encoder alone on 2B float views (the ceiling)."""
    views = tf.random.uniform([2 * batch_size, 32, 32, 3])
    variables = encoder.trainable_variables

    @tf.function(jit_compile=jit)
    def fwd_bwd(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.cast(encoder(x, training=True), tf.float32))
        grads = tape.gradient(loss, variables)
        return tf.add_n([tf.reduce_sum(tf.cast(g, tf.float32)) for g in grads])

    return lambda: fwd_bwd(views).numpy()


def benchmarks(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    s = _settings(args)
    for name in s["encoders"]:
        step_fn, state, precision, jit = _pretrain_step(name, s)
        common = {
            "encoder": name,
            "batch_size": s["batch_size"],
            "precision": precision,
            "jit_compile": jit,
            "width_multiplier": s["width_multiplier"],
        }
        ceiling_fn = _encoder_fwd_bwd(state.encoder, s["batch_size"], jit)
        # Interleaved rounds, best of each: on a shared machine, load from other processes
        # otherwise lands on one side of the ratio.
        ceiling = full = 0.0
        for i in range(s["rounds"]):
            warmup = s["warmup"] if i == 0 else 1
            ceiling = max(ceiling, s["batch_size"] / _time_steps(ceiling_fn, warmup, s["steps"]))
            full = max(full, s["batch_size"] / _time_steps(step_fn, warmup, s["steps"]))
        yield {"name": "pretrain_images_per_second", "value": full, "unit": "images/s", **common}
        yield {
            "name": "encoder_fwd_bwd_images_per_second",
            "value": ceiling,
            "unit": "images/s",
            "views_per_image": 2,
            **common,
        }
        yield {
            "name": "pretrain_efficiency",
            "value": full / ceiling,
            "unit": "fraction",
            "target": 0.85,
            **common,
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simclr.bench.train", description=__doc__)
    parser.add_argument("--encoders", default="resnet18,resnet50")
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument(
        "--precision", default="auto", choices=["auto", "float32", "bfloat16", "float16"]
    )
    parser.add_argument("--jit_compile", default="auto", choices=["auto", "true", "false"])
    parser.add_argument("--width_multiplier", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup_steps", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    for row in benchmarks(parser.parse_args(argv)):
        print(json.dumps(row, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
