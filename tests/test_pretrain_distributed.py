"""MirroredStrategy (2 logical CPUs) and MultiWorkerMirroredStrategy (2 processes on
127.0.0.1) agree with the single-device run on the same global batches.

The augmentation seed depends on the replica id (so views differ between replica
layouts); these runs use a policy without randomness (full-image crop, no flip, jitter,
grayscale or blur) so that every layout sees identical inputs and the comparison checks
batch splitting, sync BatchNorm, global-batch negatives and gradient aggregation.
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.fixtures_gcs import free_ports
from tests.fixtures_train import pretrain_cli, read_scalars, run_together

DETERMINISTIC_POLICY = {
    "crop_area_min": 1.0, "crop_area_max": 1.0, "crop_aspect_min": 1.0, "crop_aspect_max": 1.0,
    "flip_prob": 0.0, "color_jitter_prob": 0.0, "grayscale_prob": 0.0, "blur": False,
}  # fmt: skip
STEPS = 3


def _args(data_dir, tmp_path, name: str) -> list[str]:
    policy = tmp_path / "policy.json"
    if not policy.exists():
        from simclr.augment import AugmentPolicy

        policy.write_text(AugmentPolicy(**DETERMINISTIC_POLICY).to_json())
    return [
        f"--data_dir={data_dir}",
        f"--output_dir={tmp_path / name}",
        f"--policy={policy}",
        "--encoder=resnet18",
        "--width_multiplier=0.125",
        "--batch_size=32",
        f"--max_train_examples={32 * STEPS}",
        "--epochs=1",
        "--learning_rate=1.0",
        "--warmup_epochs=0",
        "--monitor_every_epochs=0",
        "--log_every_steps=1",
        "--seed=5",
    ]


def _losses(run_dir) -> list[float]:
    return [v for _, v in read_scalars(str(run_dir / "tensorboard"))["train/loss"]]


@pytest.fixture(scope="module")
def single_device_losses(real_prepared_data, tmp_path_factory) -> list[float]:
    tmp = tmp_path_factory.mktemp("single")
    proc = pretrain_cli(_args(real_prepared_data, tmp, "run"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = _losses(tmp / "run")
    assert len(losses) == STEPS
    return losses


def test_mirrored_two_cpu_devices_matches_single_device(
    real_prepared_data, tmp_path, single_device_losses
):
    proc = pretrain_cli(
        [*_args(real_prepared_data, tmp_path, "run"), "--strategy=mirrored", "--num_cpu_devices=2"]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "strategy mirrored (MirroredStrategy, 2 replicas)" in proc.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["steps"] == STEPS
    losses = _losses(tmp_path / "run")
    # Step 1: same weights, same global batch. Later steps also check the summed gradients.
    assert losses[0] == pytest.approx(single_device_losses[0], abs=1e-4)
    assert losses == pytest.approx(single_device_losses, abs=1e-3)


def test_multi_worker_two_processes_matches_single_device(
    real_prepared_data, tmp_path, single_device_losses
):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    args = [*_args(real_prepared_data, tmp_path, "run"), "--strategy=auto"]
    commands = [
        (
            [sys.executable, "-m", "simclr.tasks.pretrain", *args],
            {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})},
        )
        for i in range(2)
    ]
    procs = run_together(commands, tmp_path / "logs", timeout=240)
    for p in procs:
        assert p.returncode == 0, p.stderr[-3000:]
    chief, worker = procs
    assert "strategy multi_worker (" in chief.stdout and "2 replicas" in chief.stdout
    assert worker.stdout == ""  # only the chief logs and writes
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["steps"] == STEPS
    losses = _losses(tmp_path / "run")
    assert losses[0] == pytest.approx(single_device_losses[0], abs=1e-4)
    assert losses == pytest.approx(single_device_losses, abs=1e-3)
