"""Issue 19: an --output_dir that is a file or read-only is refused before any work, by
every task's CLI (pretrain's own case is in tests/test_guarantees.py): one `error:` line
naming the flag and the location, exit 2, nothing written, no work logged.

Read-only: tests run as root here, which ignores permission bits, so the directory is
made immutable (`chattr +i`: even root cannot create files in it); as a regular user a
chmod 0555 does the same. Skipped only if neither is possible.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures_train import REPO


def _task(name: str, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"simclr.tasks.{name}", *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "read_only"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("root and no chattr +i here: cannot make a read-only directory")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> str:
    from simclr.model import build_encoder, save_encoder

    uri = tmp_path_factory.mktemp("model") / "encoder"
    save_encoder(build_encoder("resnet18", 0.125), str(uri), config={})
    return str(uri)


# Each task's arguments apart from --output_dir, and a log line that only its work prints.
def _args(task: str, data_dir: str, encoder: str, archive: str) -> list[str]:
    return {
        "prepare_data": [f"--source={archive}", "--num_shards=2"],
        "augment": [f"--data_dir={data_dir}", "--benchmark_seconds=0"],
        "evaluate": [f"--data_dir={data_dir}", f"--model_dir={encoder}", "--protocols=knn"],
        "embed": [f"--data_dir={data_dir}", f"--model_dir={encoder}"],
    }[task]


WORK_LOGGED = {"prepare_data": "layout) in", "evaluate": "evaluating", "embed": "images/s"}
TASKS = ["prepare_data", "augment", "evaluate", "embed"]


def _assert_refused(
    proc, output_dir: Path, reason: str, task: str, flag: str = "--output_dir"
) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert f"{flag} {output_dir} is not writable" in errors[0], errors[0]
    assert reason in errors[0], errors[0]
    assert "Traceback" not in proc.stderr
    if task in WORK_LOGGED:
        assert WORK_LOGGED[task] not in proc.stdout + proc.stderr


@pytest.mark.parametrize("task", TASKS)
def test_output_dir_that_is_a_file(
    task, tiny_prepared_data, encoder_dir, real_cifar_archive, tmp_path
):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    args = _args(task, tiny_prepared_data, encoder_dir, str(real_cifar_archive))
    proc = _task(task, [*args, f"--output_dir={blocker}"])
    _assert_refused(proc, blocker, "is a file, not a directory", task)
    assert blocker.read_text() == "not a directory"


@pytest.mark.parametrize("task", TASKS)
def test_read_only_output_dir(
    task, tiny_prepared_data, encoder_dir, real_cifar_archive, read_only_dir
):
    args = _args(task, tiny_prepared_data, encoder_dir, str(real_cifar_archive))
    proc = _task(task, [*args, f"--output_dir={read_only_dir}"])
    _assert_refused(proc, read_only_dir, "permission denied", task)
    assert os.listdir(read_only_dir) == []


def test_evaluate_refuses_a_read_only_tensorboard_dir_before_any_work(
    tiny_prepared_data, encoder_dir, read_only_dir, tmp_path
):
    """Its TensorBoard scalars are written after metrics.json: found late, the run would
    publish and then crash."""
    out = tmp_path / "evaluation"
    args = _args("evaluate", tiny_prepared_data, encoder_dir, "")
    proc = _task("evaluate", [*args, f"--output_dir={out}", f"--tensorboard_dir={read_only_dir}"])
    _assert_refused(proc, read_only_dir, "permission denied", "evaluate", "--tensorboard_dir")
    assert not out.exists() and os.listdir(read_only_dir) == []


def test_probe_leaves_a_folder_another_worker_wrote_into(tmp_path, monkeypatch):
    """The workers of one cluster probe a shared --output_dir at once: the probe of one
    must not fail because the chief wrote into the folder it created (the multi-worker
    test hung on this: the worker exited 2 with `Directory not empty` before joining)."""
    from simclr.storage import files

    out = tmp_path / "new" / "run"
    real_delete = files.delete

    def chief_writes_meanwhile(uri: str) -> None:
        real_delete(uri)
        (out / "run.lock").write_text("chief")

    monkeypatch.setattr(files, "delete", chief_writes_meanwhile)
    files.check_writable(str(out), "--output_dir")
    assert [p.name for p in out.iterdir()] == ["run.lock"]

    fresh = tmp_path / "fresh" / "run"
    monkeypatch.setattr(files, "delete", real_delete)
    files.check_writable(str(fresh), "--output_dir")
    assert not (tmp_path / "fresh").exists()  # alone, the probe still leaves no trace


def test_probe_writes_again_when_another_probe_removed_the_folder(tmp_path, monkeypatch):
    """The other half of that race: two workers probe the same missing --output_dir; one
    removes the folders it made between the other's mkdir and its write. The second
    worker exited 2 with `not writable: not found` and the chief waited for it forever."""
    import tempfile

    from simclr.storage import files

    out = tmp_path / "new" / "run"
    real_mkstemp = tempfile.mkstemp
    calls = []

    def other_probe_cleans_up_first(*args, **kwargs):
        calls.append(kwargs.get("dir"))
        if len(calls) == 1:  # the other worker's clean-up, after our mkdir, before our write
            os.rmdir(out)
            os.rmdir(out.parent)
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", other_probe_cleans_up_first)
    files.check_writable(str(out), "--output_dir")
    assert calls == [str(out), str(out)]
    assert not (tmp_path / "new").exists()


def test_probe_writes_again_when_the_parent_vanished_while_making_the_folders(
    tmp_path, monkeypatch
):
    """The same race one step earlier: the other worker removes the parent that our
    `os.makedirs` has just made, before it makes the last folder (mkdir: not found)."""
    from simclr.storage import files

    out = tmp_path / "new" / "run"
    real_mkdir = os.mkdir
    calls = []

    def other_probe_removes_the_parent(path, *args, **kwargs):
        calls.append(str(path))
        if str(path) == str(out) and calls.count(str(out)) == 1:
            os.rmdir(out.parent)  # the other worker's clean-up, between our two mkdirs
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", other_probe_removes_the_parent)
    files.check_writable(str(out), "--output_dir")
    assert calls.count(str(out)) == 2 and calls.count(str(out.parent)) == 2
    assert not (tmp_path / "new").exists()
