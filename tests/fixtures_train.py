"""Training fixtures (see conftest.py).

- `pretrained_run` (session): str output directory of a pretraining run on
  `real_prepared_data` (ResNet-18 at width 0.125, 5,000 real CIFAR-10 images, batch
  256, LARS, 4 epochs = 79 steps on the ceil'd schedule; about a minute of CPU on 2 cores). It holds encoder/,
  config.json, metrics.json, checkpoints/ and tensorboard/. Its kNN top-1 (monitor:
  500 labelled images as the bank, 1,000 test queries) clearly beats the random-init
  encoder's, which the monitor logs at step 0 (`monitor/knn_top1`).
- `PRETRAINED_SETTINGS`: the flags of that run (to rebuild or compare).
- `pretrain_cli(args, ...)`: runs `python -m simclr.tasks.pretrain` in a subprocess.
- `run_together(commands, log_dir, timeout)`: runs processes side by side (the
  workers of one cluster), their output in files, and returns them all completed.
- `read_scalars(logdir)`: {tag: [(step, value), ...]} from the event files under logdir.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

__all__ = ["PRETRAINED_SETTINGS", "pretrain_cli", "pretrained_run", "read_scalars", "run_together"]

REPO = Path(__file__).resolve().parents[1]

PRETRAINED_SETTINGS = {
    "encoder": "resnet18",
    "width_multiplier": 0.125,
    "epochs": 4,
    "batch_size": 256,
    "learning_rate": 1.0,
    "warmup_epochs": 1.0,
    "temperature": 0.5,
    "monitor_every_epochs": 2,
    "log_every_steps": 10,
    "checkpoint_every_steps": 1000,
    "seed": 0,
}


def pretrain_cli(
    args: list[str], *, env: dict | None = None, timeout: float = 300, **popen
) -> subprocess.CompletedProcess:
    """Runs the pretrain task in a fresh interpreter; returns the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "simclr.tasks.pretrain", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        **popen,
    )


def run_together(
    commands: list[tuple[list[str], dict[str, str]]], log_dir: Path, timeout: float
) -> list[subprocess.CompletedProcess]:
    """Runs (argv, extra env) commands at once and waits for all of them.

    Output goes to files, not pipes: the workers of one cluster wait for each other in
    collectives, so a worker blocked writing to a full pipe nobody reads yet (64 KiB;
    TensorFlow logs about 32 KiB a run, more when gRPC retries) would hang them all.
    On timeout every process is killed and the test fails with each one's stderr.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    procs, logs = [], []
    for index, (argv, env) in enumerate(commands):
        out, err = log_dir / f"{index}.stdout", log_dir / f"{index}.stderr"
        logs.append((out, err))
        with out.open("w") as stdout, err.open("w") as stderr:
            procs.append(
                subprocess.Popen(
                    argv, cwd=REPO, env={**os.environ, **env}, stdout=stdout, stderr=stderr
                )
            )
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
            proc.wait()
        tails = [
            f"[{index}] exit {proc.returncode}: {err.read_text()[-2000:]}"
            for index, (proc, (_, err)) in enumerate(zip(procs, logs, strict=True))
        ]
        pytest.fail(f"processes still running after {timeout:.0f} s\n" + "\n".join(tails))
    return [
        subprocess.CompletedProcess(p.args, p.returncode, out.read_text(), err.read_text())
        for p, (out, err) in zip(procs, logs, strict=True)
    ]


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """Scalar summaries of every event file under `logdir`, sorted by step."""
    import tensorflow as tf

    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for path in sorted(Path(logdir).rglob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    number = float(tf.make_ndarray(value.tensor))
                    out[value.tag].append((int(event.step), number))
    return {tag: sorted(points) for tag, points in out.items()}


@pytest.fixture(scope="session")
def pretrained_run(real_prepared_data: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    from simclr.train import PretrainConfig, run

    out = tmp_path_factory.mktemp("pretrained_run") / "run"
    run(PretrainConfig(data_dir=real_prepared_data, output_dir=str(out), **PRETRAINED_SETTINGS))
    return str(out)
