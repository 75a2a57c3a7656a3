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


def test_checkpoint_files_without_index_resume_from_the_newest_complete(tmp_path):
    """Issue 15 item 7: files no index names are no error; the newest complete one wins."""
    uri = str(tmp_path / "local_ckpt")
    _save_steps(uri, tmp_path, [1, 2])
    (tmp_path / "local_ckpt" / "checkpoint").unlink()
    (tmp_path / "local_ckpt" / "ckpt-3.data-00000-of-00001").write_bytes(b"half")  # no .index
    saver, value = _checkpointer(uri, tmp_path)
    assert saver.restore_latest().endswith("ckpt-2") and float(value.numpy()) == 2.0


def test_kill_during_the_first_upload_starts_fresh_without_a_flag(
    gcs_bucket, tmp_path, monkeypatch
):
    """A fault injected between the data file and the .index upload of the very first
    checkpoint (a kill mid-upload): the index must not have been written before the data
    (else the restart would find an index naming missing files), and the restart starts
    afresh without --checkpoint_fallback and then saves normally."""
    uri = f"{gcs_bucket}/ckpt"
    real_upload, calls = storage.upload_file, []

    def upload_then_die(local, remote):
        calls.append(remote)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed between the checkpoint's files")
        real_upload(local, remote)

    monkeypatch.setattr(storage, "upload_file", upload_then_die)
    saver, value = _checkpointer(uri, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        saver.save(5)
    saver.close()
    monkeypatch.setattr(storage, "upload_file", real_upload)
    assert storage.list_files(uri) == ["ckpt-5.data-00000-of-00001"]  # no index of any kind

    restarted, value = _checkpointer(uri, tmp_path)
    assert restarted.restore_latest() is None
    value.assign(5.0)
    restarted.save(5)
    restarted.close()
    again, value = _checkpointer(uri, tmp_path)
    assert again.restore_latest().endswith("ckpt-5") and float(value.numpy()) == 5.0
    again.close()


def test_stale_temp_directories_are_removed_at_start(gcs_bucket, tmp_path):
    local = tmp_path / "local_ckpt"
    (local / "ckpt-7_temp").mkdir(parents=True)
    (local / "ckpt-7_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x")
    _checkpointer(str(local), tmp_path)[0].close()
    assert not (local / "ckpt-7_temp").exists()
    uri = f"{gcs_bucket}/ckpt"
    storage.write_text(f"{uri}/ckpt-7_temp/part-00000-of-00001.index", "x")
    _checkpointer(uri, tmp_path)[0].close()
    assert storage.list_files(uri) == []


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
