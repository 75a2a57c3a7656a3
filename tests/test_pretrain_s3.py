"""Pretraining against an S3-compatible server (moto on 127.0.0.1): data, checkpoints,
TensorBoard logs and outputs all on s3://; `make tensorboard`'s follower answering
scalars over HTTP while the run trains; preempted and resumed from the s3://
checkpoints in a fresh local directory, at the step it reached."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from simclr import storage
from simclr.train_config import PREEMPTED_EXIT_CODE

from tests.fixtures_gcs import free_port
from tests.fixtures_train import REPO, read_scalars

EPOCHS = 20
TOTAL_STEPS = math.ceil(200 * EPOCHS / 32)  # 200 images, batch 32: the ceil'd schedule


def _train_loss_points(base: str) -> list:
    """train/loss as TensorBoard serves it ([] until it has any)."""
    try:
        with urllib.request.urlopen(f"{base}/data/plugin/scalars/tags", timeout=5) as r:
            tags = json.loads(r.read())
        runs = [run for run, run_tags in tags.items() if "train/loss" in run_tags]
        if not runs:
            return []
        query = f"{base}/data/plugin/scalars/scalars?run={runs[0]}&tag=train/loss"
        with urllib.request.urlopen(query, timeout=5) as r:
            return json.loads(r.read())
    except OSError:
        return []


def test_s3_live_tensorboard_preempt_and_resume_in_fresh_dir(
    tiny_prepared_data, s3_bucket, tmp_path
):
    data_uri = f"{s3_bucket}/data"
    storage.upload_dir(tiny_prepared_data, data_uri)
    out, ckpt, tb = f"{s3_bucket}/run", f"{s3_bucket}/ckpt", f"{s3_bucket}/tb"
    args = [
        f"--data_dir={data_uri}",
        f"--output_dir={out}",
        f"--checkpoint_dir={ckpt}",
        f"--tensorboard_dir={tb}",
        "--encoder=resnet18",
        "--width_multiplier=0.125",
        "--batch_size=32",
        f"--epochs={EPOCHS}",
        "--monitor_every_epochs=10",
        "--monitor_queries=100",
        "--log_every_steps=1",
        "--checkpoint_every_steps=6",
        "--keep_checkpoints=2",
        "--tensorboard_sync_seconds=0.5",
    ]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    board = subprocess.Popen(  # what `make tensorboard LOGDIR=s3://...` runs
        [sys.executable, "-m", "simclr.tensorboard_follow", f"--logdir={tb}"]
        + [f"--port={port}", "--sync_seconds=0.5", f"--work_dir={tmp_path / 'board'}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "simclr.tasks.pretrain", *args, f"--cache_dir={tmp_path / 'c1'}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        # TensorBoard serves the run's loss from s3:// while it trains, and keeps up.
        deadline, first = time.monotonic() + 180, []
        while True:
            assert time.monotonic() < deadline, f"no live scalars, first answer: {first}"
            assert proc.poll() is None, "the run ended before TensorBoard showed it live"
            time.sleep(1)
            points = _train_loss_points(base)
            if first and len(points) > len(first):
                break  # more steps than the first answer had: it follows the run
            first = first or points
        assert all(step >= 1 for _, step, _ in points) and points[-1][1] < TOTAL_STEPS
        while not any(f.endswith(".index") for f in storage.list_files(ckpt)):
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint on s3://"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        for p in (proc, board):
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=20)
    rest = "".join(lines)
    assert proc.returncode == PREEMPTED_EXIT_CODE, rest[-3000:]
    saved = int(re.findall(r"checkpoint saved at step (\d+)", rest)[-1])
    assert 6 <= saved < TOTAL_STEPS
    remote = storage.list_files(ckpt)
    assert "checkpoint" in remote and f"ckpt-{saved}.index" in remote
    assert not storage.exists(f"{out}/metrics.json")

    # A fresh pod: nothing local but the flags (another cache dir, another cwd).
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    final = subprocess.run(
        [sys.executable, "-m", "simclr.tasks.pretrain", *args, f"--cache_dir={fresh / 'cache'}"],
        cwd=fresh,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert final.returncode == 0, final.stderr[-3000:]
    assert re.search(rf"resumed from \S+ckpt-{saved} at step {saved}", final.stdout), final.stdout
    metrics = storage.read_json(f"{out}/metrics.json")
    assert metrics["steps"] == TOTAL_STEPS and metrics["steps_this_run"] == TOTAL_STEPS - saved
    assert storage.exists(f"{out}/encoder/encoder.keras") and storage.exists(f"{out}/config.json")
    kept = sorted({f.split(".")[0] for f in storage.list_files(ckpt) if f.startswith("ckpt-")})
    assert f"ckpt-{TOTAL_STEPS}" in kept and len(kept) <= 2, kept

    logs = tmp_path / "tb"
    storage.download_dir(tb, str(logs))
    steps = [s for s, _ in read_scalars(str(logs))["train/loss"]]
    assert steps[:saved] == list(range(1, saved + 1)) and steps[-1] == TOTAL_STEPS
