"""The whole pipeline under kfp.local with every root it lets us point elsewhere on
s3:// (a moto server on 127.0.0.1): a bucket of unlabelled photos (`source`: a prefix of
real CIFAR-10 JPEG files, no class folders) with a separate labelled prefix to evaluate
on (`eval_source`, issue 16), checkpoints (`checkpoint_root`) and TensorBoard logs
(`tensorboard_root`). kfp.local keeps its own artifacts in a local pipeline root; the
steps reach s3:// with the standard AWS variables, as a Kubeflow step does with the
MinIO secret mounted as env."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from simclr import storage

from tests.fixtures_images import cifar_jpegs, write_class_folders, write_flat_folder
from tests.fixtures_train import read_scalars

REPO = Path(__file__).resolve().parents[1]
NUM_PHOTOS, EVAL_PER_CLASS = 300, 20


def test_pipeline_on_a_bucket_of_photos_with_every_root_on_s3(s3_bucket, tmp_path):
    jpegs = cifar_jpegs()
    write_flat_folder(tmp_path / "photos", jpegs.files[:NUM_PHOTOS])
    write_class_folders(
        tmp_path / "labelled", jpegs.per_class(EVAL_PER_CLASS, skip=NUM_PHOTOS), jpegs.classes
    )
    source, eval_source = f"{s3_bucket}/photos", f"{s3_bucket}/labelled"
    storage.upload_dir(str(tmp_path / "photos"), source)
    storage.upload_dir(str(tmp_path / "labelled"), eval_source)
    ckpt_root, tb_root = f"{s3_bucket}/checkpoints", f"{s3_bucket}/tensorboard"
    root = tmp_path / "run"
    env = {**os.environ, "SIMCLR_CACHE_DIR": str(tmp_path / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "simclr_pipeline.cli",
            "run-local",
            "--preset=test",
            f"--root={root}",
            f"--source={source}",
            f"--param=eval_source={eval_source}",
            f"--param=checkpoint_root={ckpt_root}",
            f"--param=tensorboard_root={tb_root}",
            "--param=max_train_examples=128",
            "--param=eval_max_train_examples=200",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-5000:])
    summary = json.loads((root / "summary.json").read_text())
    logdir = summary["paths"]["tensorboard"]
    assert logdir.startswith(f"{tb_root}/"), logdir
    assert f"make tensorboard LOGDIR={logdir}" in result.stdout

    # Checkpoints and both runs' TensorBoard events (pretrain, evaluate's "eval") on s3://.
    run_id = logdir.rsplit("/", 1)[-1]
    ckpts = storage.list_files(f"{ckpt_root}/{run_id}/checkpoints")
    assert "checkpoint" in ckpts and any(f.endswith(".index") for f in ckpts), ckpts
    logs = tmp_path / "logs"
    storage.download_dir(logdir, str(logs))
    assert read_scalars(str(logs))["train/loss"], storage.list_files(logdir)
    assert any(f.startswith("eval/") and "tfevents" in f for f in storage.list_files(logdir))
    assert summary["pretrain"]["steps"] > 0
    # Trained on the unlabelled photos; scored with labels on the eval source's test split.
    evaluation = summary["evaluation"]
    assert evaluation["labelled"] is True and "knn_top1" in evaluation, evaluation
    assert evaluation["num_test"] == 20  # the default test_fraction 0.1 of 200
    (manifest,) = root.glob("pipeline_root/*/prepare-data/dataset/manifest.json")
    manifest = json.loads(manifest.read_text())
    assert manifest["source"]["uri"] == source and manifest["labelled"] is False
    assert manifest["splits"]["train"]["num_examples"] == NUM_PHOTOS
    assert manifest["evaluation"]["source"] == eval_source
    # Nothing went to a local folder named after a scheme.
    assert not any(p.name.endswith(":") for p in tmp_path.rglob("*")), "local 's3:' folder"
