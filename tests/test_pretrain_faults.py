"""Pretraining fault tolerance: bad input, SIGKILL + resume, SIGTERM, non-finite loss."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from simclr.train_config import PREEMPTED_EXIT_CODE

from tests.fixtures_train import REPO, pretrain_cli

SMALL = [
    "--encoder=resnet18",
    "--width_multiplier=0.125",
    "--batch_size=32",
    "--max_train_examples=256",
    "--epochs=2",
    "--learning_rate=0.5",
    "--warmup_epochs=0.5",
    "--monitor_every_epochs=0",
    "--log_every_steps=1",
    "--checkpoint_every_steps=4",
    "--seed=3",
]  # 8 steps per epoch, 16 steps
TOTAL_STEPS = 16


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--temperature=0"], "--temperature"),
        (["--epochs=0"], "--epochs"),
        (["--encoder=vgg16"], "--encoder"),
        (["--batch_size=1000"], "--batch_size 1000 is larger"),
        (["--strategy=gpu_cluster"], "--strategy"),
        (["--precision=int8"], "--precision"),
        (["--policy=/nonexistent/policy.json"], "--policy"),
    ],
)
def test_bad_flags_fail_with_one_line(real_prepared_data, tmp_path, flags, needle):
    out = tmp_path / "out"
    proc = pretrain_cli(
        [f"--data_dir={real_prepared_data}", f"--output_dir={out}", *SMALL, *flags], timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    # Checked before TensorFlow is imported: stderr is exactly the one error line.
    assert proc.stderr.strip().splitlines() == _error_lines(proc.stderr), proc.stderr
    assert needle in proc.stderr
    assert not (out / "metrics.json").exists()


def test_batch_not_divisible_by_replicas(real_prepared_data, tmp_path):
    out = tmp_path / "out"
    proc = pretrain_cli(
        [
            f"--data_dir={real_prepared_data}",
            f"--output_dir={out}",
            *SMALL,
            "--strategy=mirrored",
            "--num_cpu_devices=3",
        ],
        timeout=120,
    )
    assert proc.returncode == 2
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1 and "not divisible by the 3 replicas" in errors[0]
    assert proc.stderr.strip().splitlines()[-1] == errors[0]
    assert not (out / "metrics.json").exists()


def test_num_cpu_devices_that_cannot_be_set_is_an_error():
    import tensorflow as tf
    from simclr import distribute
    from simclr.errors import UserError

    have = len(tf.config.list_logical_devices("CPU"))  # TensorFlow's devices now exist
    with pytest.raises(UserError, match=f"--num_cpu_devices {have + 2}: .*already initialised"):
        distribute.configure_cpu_devices(have + 2)
    if have > 1:
        distribute.configure_cpu_devices(have)  # what is there already: fine


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_missing_or_corrupt_manifest(real_prepared_data, tmp_path, damage):
    data = tmp_path / "data"
    data.mkdir()
    if damage == "corrupt":
        text = (Path(real_prepared_data) / "manifest.json").read_text()
        (data / "manifest.json").write_text(text[: len(text) // 2])
    proc = pretrain_cli(
        [f"--data_dir={data}", f"--output_dir={tmp_path / 'out'}", *SMALL], timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == _error_lines(proc.stderr)
    assert "manifest" in proc.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "simclr.tasks.pretrain", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _run_until(proc: subprocess.Popen, step: int) -> list[str]:
    """Reads progress lines until `step` is reported; returns the lines read."""
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if re.search(rf" step {step}/{TOTAL_STEPS} ", line):
            return lines
    raise AssertionError(f"process ended before step {step}: {''.join(lines)}")


def _final_weights(ckpt_dir: Path) -> dict[str, np.ndarray]:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(ckpt_dir / f"ckpt-{TOTAL_STEPS}"))
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name.startswith(("encoder/", "head/")) and "OPTIMIZER_SLOT" not in name
    }


def test_sigterm_and_sigkill_then_resume_match_uninterrupted_run(real_prepared_data, tmp_path):
    common = [f"--data_dir={real_prepared_data}", *SMALL]
    reference = pretrain_cli([*common, f"--output_dir={tmp_path / 'ref'}"])
    assert reference.returncode == 0, reference.stderr[-3000:]

    # 1. SIGTERM at step 5: a checkpoint at that step and a clean, documented exit.
    out = tmp_path / "interrupted"
    args = [*common, f"--output_dir={out}"]
    proc = _start(args)
    _run_until(proc, 5)
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == PREEMPTED_EXIT_CODE, rest
    saved = int(re.search(r"SIGTERM: checkpoint saved at step (\d+)", rest).group(1))
    assert 5 <= saved < 8
    assert (out / "checkpoints" / f"ckpt-{saved}.index").is_file()
    assert not (out / "metrics.json").exists()

    # 2. Resumed from there, then SIGKILLed at step 11 (checkpoint 8 on disk, 9-11 lost).
    proc = _start(args)
    lines = _run_until(proc, 11)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert any(f"at step {saved}" in line for line in lines), lines
    assert not (out / "metrics.json").exists()

    # 3. Resumed again: from step 8, to the end.
    final = pretrain_cli(args)
    assert final.returncode == 0, final.stderr[-3000:]
    assert "resumed from" in final.stdout and "at step 8" in final.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    ref_metrics = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    assert metrics["steps"] == ref_metrics["steps"] == TOTAL_STEPS
    assert metrics["steps_this_run"] == TOTAL_STEPS - 8
    # Same batches, same views, same updates: on this CPU the results agree to float32
    # round-off (bit-identical in practice); the tolerance allows for threaded kernels.
    assert metrics["final_loss"] == pytest.approx(ref_metrics["final_loss"], abs=1e-4)
    ref_weights = _final_weights(tmp_path / "ref" / "checkpoints")
    weights = _final_weights(out / "checkpoints")
    assert len(ref_weights) > 20 and weights.keys() == ref_weights.keys()
    for name, value in ref_weights.items():
        np.testing.assert_allclose(weights[name], value, rtol=1e-4, atol=1e-5, err_msg=name)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(real_prepared_data, tmp_path):
    out = tmp_path / "out"
    proc = pretrain_cli(
        [
            f"--data_dir={real_prepared_data}",
            f"--output_dir={out}",
            *SMALL,
            "--learning_rate=1e35",
            "--warmup_epochs=0",
            "--checkpoint_every_steps=1",
        ]
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    error = _error_lines(proc.stderr)
    assert len(error) == 1 and "training diverged at step" in error[0], proc.stderr[-2000:]
    bad_step = int(re.search(r"at step (\d+)", error[0]).group(1))
    ckpts = sorted(int(p.name[5:-6]) for p in (out / "checkpoints").glob("ckpt-*.index"))
    assert all(s < bad_step for s in ckpts)
    if bad_step > 1:
        assert ckpts[-1] == bad_step - 1
    assert not (out / "metrics.json").exists()
    assert os.path.isdir(out / "checkpoints")
