"""Pretraining against object storage (a real GCS emulator): data, checkpoints, TensorBoard
logs and outputs all on gs://; live TensorBoard mirroring; resume from a gs:// checkpoint."""

from __future__ import annotations

import math
import re
import signal
import subprocess
import sys
import time

from simclr import storage
from simclr.train_config import PREEMPTED_EXIT_CODE

from tests.fixtures_train import REPO, pretrain_cli, read_scalars

# 200 images, batch 32, 10 epochs: the official ceil'd schedule, ceil(200 * 10 / 32)
TOTAL_STEPS = math.ceil(200 * 10 / 32)


def test_gcs_checkpoints_tensorboard_and_resume(tiny_prepared_data, gcs_bucket, tmp_path):
    data_uri = f"{gcs_bucket}/data"
    storage.upload_dir(tiny_prepared_data, data_uri)
    out, ckpt, tb = f"{gcs_bucket}/run", f"{gcs_bucket}/ckpt", f"{gcs_bucket}/tb"
    args = [
        f"--data_dir={data_uri}",
        f"--output_dir={out}",
        f"--checkpoint_dir={ckpt}",
        f"--tensorboard_dir={tb}",
        f"--cache_dir={tmp_path / 'cache'}",
        "--encoder=resnet18",
        "--width_multiplier=0.125",
        "--batch_size=32",
        "--epochs=10",
        "--monitor_every_epochs=5",
        "--monitor_queries=100",
        "--log_every_steps=1",
        "--checkpoint_every_steps=6",
        "--keep_checkpoints=2",
        "--tensorboard_sync_seconds=0.5",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "simclr.tasks.pretrain", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        for line in proc.stdout:
            if " step 2/" in line:
                break
        # The TensorBoard logs reach gs:// while the run is still going.
        deadline = time.monotonic() + 30
        while not any("tfevents" in f for f in storage.list_files(tb)):
            assert time.monotonic() < deadline, "no event file mirrored to gs://"
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before its logs were mirrored"
        for line in proc.stdout:
            if " step 8/" in line:  # past the first checkpoint (step 6)
                break
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == PREEMPTED_EXIT_CODE, rest
    saved = int(re.search(r"checkpoint saved at step (\d+)", rest).group(1))
    remote = storage.list_files(ckpt)
    assert "checkpoint" in remote and f"ckpt-{saved}.index" in remote
    assert not storage.exists(f"{out}/metrics.json")

    final = pretrain_cli(args)
    assert final.returncode == 0, final.stderr[-3000:]
    assert re.search(rf"resumed from \S+ckpt-{saved} at step {saved}", final.stdout), final.stdout
    metrics = storage.read_json(f"{out}/metrics.json")
    assert metrics["steps"] == TOTAL_STEPS and metrics["steps_this_run"] == TOTAL_STEPS - saved
    assert storage.exists(f"{out}/encoder/encoder.keras") and storage.exists(f"{out}/config.json")
    remote = storage.list_files(ckpt)
    kept = sorted({f.split(".")[0] for f in remote if f.startswith("ckpt-")})
    assert f"ckpt-{TOTAL_STEPS}" in kept and len(kept) <= 2, remote

    logs = tmp_path / "tb"
    storage.download_dir(tb, str(logs))
    scalars = read_scalars(str(logs))
    steps = [s for s, _ in scalars["train/loss"]]
    # Both sessions' events are there: every step logged once before the preemption...
    assert steps[:saved] == list(range(1, saved + 1)) and steps[-1] == TOTAL_STEPS
    assert {s for s, _ in scalars["monitor/knn_top1"]} >= {0, math.ceil(200 * 5 / 32), TOTAL_STEPS}
