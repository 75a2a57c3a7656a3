"""Checkpoints are never lost: incomplete checkpoints against a real GCS emulator, both
through simclr.checkpoint.Checkpointer and through a restarted pretraining task."""

from __future__ import annotations

import json

import pytest
import tensorflow as tf
from simclr import storage
from simclr.checkpoint import Checkpointer, complete_checkpoints, missing_files
from simclr.errors import UserError

from tests.fixtures_train import pretrain_cli


def _checkpointer(uri: str, tmp_path, **kwargs) -> tuple[Checkpointer, tf.Variable]:
    value = tf.Variable(0.0)
    cache = tmp_path / "cache"
    return Checkpointer(
        tf.train.Checkpoint(value=value), uri, keep=3, chief=True, cache_dir=str(cache), **kwargs
    ), value


def _save_steps(uri: str, tmp_path, steps) -> None:
    saver, value = _checkpointer(uri, tmp_path)
    for step in steps:
        value.assign(float(step))
        saver.save(step)
    saver.close()


def test_listing_rules():
    listing = ["checkpoint", "ckpt-2.index", "ckpt-2.data-00000-of-00002"]
    listing += ["ckpt-2.data-00001-of-00002", "ckpt-3.index", "ckpt-3.data-00001-of-00002"]
    assert missing_files(listing, "ckpt-2") == []
    assert missing_files(listing, "ckpt-3") == ["ckpt-3.data-00000-of-00002"]
    assert missing_files(listing, "ckpt-4") == ["ckpt-4.index", "ckpt-4.data-00000-of-00001"]
    assert complete_checkpoints(listing) == ["ckpt-2"]


def test_gcs_index_naming_missing_files_is_an_error_and_nothing_is_deleted(gcs_bucket, tmp_path):
    uri = f"{gcs_bucket}/ckpt"
    _save_steps(uri, tmp_path, [10, 20, 30, 40])
    assert complete_checkpoints(storage.list_files(uri)) == ["ckpt-20", "ckpt-30", "ckpt-40"]
    storage.delete(f"{uri}/ckpt-40.data-00000-of-00001")
    before = storage.list_files(uri)

    with pytest.raises(
        UserError, match=r"ckpt-40\.data-00000-of-00001.*newest complete one is ckpt-30"
    ):
        _checkpointer(uri, tmp_path)
    assert storage.list_files(uri) == before  # every older checkpoint is still there

    # With the fallback: resume from the newest complete checkpoint, and keep going.
    saver, value = _checkpointer(uri, tmp_path, fallback=True)
    assert saver.restore_latest().endswith("ckpt-30") and float(value.numpy()) == 30.0
    value.assign(35.0)
    saver.save(35)
    listing = storage.list_files(uri)
    # The broken ckpt-40 is newer than the checkpoint just written: left alone.
    assert complete_checkpoints(listing) == ["ckpt-20", "ckpt-30", "ckpt-35"]
    assert "ckpt-40.index" in listing
    value.assign(40.0)
    saver.save(40)  # rewritten whole: the older broken files are replaced
    saver.close()
    assert complete_checkpoints(storage.list_files(uri)) == ["ckpt-30", "ckpt-35", "ckpt-40"]
    restarted, value = _checkpointer(uri, tmp_path)
    assert restarted.restore_latest().endswith("ckpt-40") and float(value.numpy()) == 40.0
    restarted.close()


def test_checkpoint_files_without_index_are_an_error(tmp_path):
    uri = str(tmp_path / "local_ckpt")
    _save_steps(uri, tmp_path, [1, 2])
    (tmp_path / "local_ckpt" / "checkpoint").unlink()
    with pytest.raises(UserError, match="ckpt-1, ckpt-2 but no `checkpoint` index naming one"):
        _checkpointer(uri, tmp_path)
    saver, value = _checkpointer(uri, tmp_path, fallback=True)
    assert saver.restore_latest().endswith("ckpt-2") and float(value.numpy()) == 2.0


def test_restarted_pretraining_never_loses_gcs_checkpoints(
    tiny_prepared_data, gcs_bucket, tmp_path
):
    ckpt = f"{gcs_bucket}/ckpt"
    args = [
        f"--data_dir={tiny_prepared_data}",
        f"--output_dir={tmp_path / 'out'}",
        f"--checkpoint_dir={ckpt}",
        f"--cache_dir={tmp_path / 'cache'}",
        "--encoder=resnet18",
        "--width_multiplier=0.125",
        "--batch_size=32",
        "--max_train_examples=128",
        "--epochs=2",  # 8 steps
        "--monitor_every_epochs=0",
        "--checkpoint_every_steps=2",
        "--keep_checkpoints=3",
        "--extend_schedule",  # the first run stops after epoch 1, the rest train to 2
    ]
    first = pretrain_cli([*args, "--epochs=1"])  # 4 steps: ckpt-2, ckpt-4
    assert first.returncode == 0, first.stderr[-3000:]
    assert complete_checkpoints(storage.list_files(ckpt)) == ["ckpt-2", "ckpt-4"]
    storage.delete(f"{ckpt}/ckpt-4.data-00000-of-00001")
    before = storage.list_files(ckpt)

    refused = pretrain_cli(args)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "ckpt-4.data-00000-of-00001" in refused.stderr
    assert storage.list_files(ckpt) == before  # ckpt-2 still there, untouched

    resumed = pretrain_cli([*args, "--checkpoint_fallback"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "ckpt-2 at step 2" in resumed.stdout
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["steps"] == 8 and metrics["steps_this_run"] == 6
    assert complete_checkpoints(storage.list_files(ckpt)) == ["ckpt-4", "ckpt-6", "ckpt-8"]
