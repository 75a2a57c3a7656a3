"""Issue 19: a corrupt (not missing) newest checkpoint, through the pretrain CLI.

A finished tiny run on real CIFAR-10 holds ckpt-4 and ckpt-8; bytes are flipped in
ckpt-8's data file or its index (both fail TensorFlow's checksums), in a local
checkpoint directory and on the S3 server fixture (remote checkpoints are downloaded
into a local directory before the restore). Without --checkpoint_fallback: one line
naming ckpt-8 and ckpt-4, exit 2. With it: a warning naming ckpt-8, resumed from
ckpt-4, trained to the end (a fresh, intact ckpt-8), exit 0. Nothing restores: one
line, exit 2. A checkpoint holding a non-finite value is skipped the same way.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from simclr import storage

from tests.fixtures_train import pretrain_cli
from tests.test_guarantees import TINY

CHECKPOINT_EVERY = ["--checkpoint_every_steps=4"]  # TINY is 8 steps: ckpt-4, ckpt-8


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _flip_middle(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    start = len(raw) // 2
    for i in range(start, min(start + 64, len(raw))):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def _newest_file(ckpt_dir: Path, part: str) -> Path:
    return ckpt_dir / ("ckpt-8.index" if part == "index" else "ckpt-8.data-00000-of-00001")


@pytest.fixture(scope="module")
def finished(real_prepared_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fallback") / "out"
    proc = pretrain_cli(
        [f"--data_dir={real_prepared_data}", f"--output_dir={out}", *TINY, *CHECKPOINT_EVERY]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = sorted(p.name for p in (out / "checkpoints").glob("ckpt-*.index"))
    assert names == ["ckpt-4.index", "ckpt-8.index"], names
    return out


def _run(real_prepared_data, out, *extra, timeout=300):
    args = [f"--data_dir={real_prepared_data}", f"--output_dir={out}", *TINY, *CHECKPOINT_EVERY]
    return pretrain_cli([*args, *extra], timeout=timeout)


def _assert_refused(proc) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "checkpoint ckpt-8" in errors[0] and "is corrupt (" in errors[0], errors[0]
    assert "pass --checkpoint_fallback to resume from ckpt-4" in errors[0], errors[0]
    assert "Traceback" not in proc.stderr


def _assert_fell_back(proc) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert any("checkpoint ckpt-8" in w and "skipped" in w and "corrupt" in w for w in warnings), (
        proc.stderr[-3000:]
    )
    assert re.search(r"resumed from \S*ckpt-4 at step 4\b", proc.stdout), proc.stdout[-3000:]
    assert "nothing left to train" not in proc.stdout


@pytest.mark.parametrize("part", ["data", "index"])
def test_local_corrupt_newest_checkpoint(real_prepared_data, finished, tmp_path, part):
    from simclr.checkpoint import problem_with

    out = tmp_path / "out"
    shutil.copytree(finished, out)
    ckpt = out / "checkpoints"
    _flip_middle(_newest_file(ckpt, part))

    _assert_refused(_run(real_prepared_data, out, timeout=180))
    assert _newest_file(ckpt, part).exists()  # the refusal deleted nothing

    proc = _run(real_prepared_data, out, "--checkpoint_fallback")
    _assert_fell_back(proc)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 8 and np.isfinite(metrics["final_loss"]), metrics
    assert problem_with(str(ckpt / "ckpt-8")) is None  # re-saved, intact
    index = (ckpt / "checkpoint").read_text()
    assert 'model_checkpoint_path: "ckpt-8"' in index, index


def test_local_every_checkpoint_corrupt_is_one_line(real_prepared_data, finished, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    _flip_middle(out / "checkpoints" / "ckpt-8.data-00000-of-00001")
    _flip_middle(out / "checkpoints" / "ckpt-4.index")
    proc = _run(real_prepared_data, out, "--checkpoint_fallback", timeout=180)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1 and "can be resumed from" in errors[0], proc.stderr[-3000:]
    assert "ckpt-8 corrupt" in errors[0] and "ckpt-4 corrupt" in errors[0], errors[0]
    warned = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len([w for w in warned if "skipped" in w]) == 2, warned


@pytest.mark.parametrize("part", ["data", "index"])
def test_s3_corrupt_newest_checkpoint(real_prepared_data, finished, s3_bucket, tmp_path, part):
    local = tmp_path / "ckpt"
    shutil.copytree(finished / "checkpoints", local)
    _flip_middle(_newest_file(local, part))
    uri = f"{s3_bucket}/ckpt"
    storage.upload_dir(str(local), uri)
    out = tmp_path / "out"
    flags = [f"--checkpoint_dir={uri}", f"--cache_dir={tmp_path / 'cache'}"]
    if part == "data":
        _assert_refused(_run(real_prepared_data, out, *flags, timeout=180))
    proc = _run(real_prepared_data, out, *flags, "--checkpoint_fallback")
    _assert_fell_back(proc)
    assert json.loads((out / "metrics.json").read_text())["steps"] == 8
    index = storage.read_text(f"{uri}/checkpoint")
    assert 'model_checkpoint_path: "ckpt-8"' in index, index
    fresh = tmp_path / "fresh"
    storage.download_file(f"{uri}/ckpt-8.index", str(fresh / "ckpt-8.index"))
    name = "ckpt-8.data-00000-of-00001"
    storage.download_file(f"{uri}/{name}", str(fresh / name))
    from simclr.checkpoint import problem_with

    assert problem_with(str(fresh / "ckpt-8")) is None  # the corrupt one was replaced


def test_non_finite_newest_checkpoint_is_skipped_only_with_the_flag(tmp_path, capsys):
    """A checkpoint holding inf (written by an older version before the divergence
    check) is refused like a corrupt one, and skipped with --checkpoint_fallback."""
    import tensorflow as tf
    from simclr.checkpoint import Checkpointer
    from simclr.errors import UserError

    uri = str(tmp_path / "ckpt")
    value = tf.Variable([0.0, 0.0])
    saver = Checkpointer(tf.train.Checkpoint(value=value), uri, keep=3, chief=True)
    for step, v in [(1, [1.0, 1.0]), (2, [2.0, np.inf])]:
        value.assign(v)
        saver.save(step)
    saver.close()

    value.assign([0.0, 0.0])
    strict = Checkpointer(tf.train.Checkpoint(value=value), uri, keep=3, chief=True)
    with pytest.raises(UserError, match=r"ckpt-2 .*holds non-finite values.*resume from ckpt-1"):
        strict.restore_latest()
    assert value.numpy().tolist() == [0.0, 0.0]  # refused before anything was assigned

    lenient = Checkpointer(tf.train.Checkpoint(value=value), uri, keep=3, chief=True, fallback=True)
    assert lenient.restore_latest().endswith("ckpt-1")
    assert value.numpy().tolist() == [1.0, 1.0]
    assert "warning: checkpoint ckpt-2" in capsys.readouterr().err
    lenient.save(2)  # the manager starts from ckpt-1: ckpt-2 is written anew, indexed last
    assert tf.train.latest_checkpoint(uri).endswith("ckpt-2")
    assert tf.train.load_checkpoint(uri + "/ckpt-2").get_tensor(
        "value/.ATTRIBUTES/VARIABLE_VALUE"
    ).tolist() == [1.0, 1.0]
