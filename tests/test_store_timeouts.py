"""A dead or silent object store fails every task within SIMCLR_STORE_TIMEOUT (issue 19).

Each task CLI is pointed at 127.0.0.1:<closed port> (connection refused) and at a server
that accepts connections and never answers (read timeouts), for gs:// (through
STORAGE_EMULATOR_HOST) and s3:// (through AWS_ENDPOINT_URL_S3). Each must end with exit
2, exactly one ``error:`` line naming the URI, within the budget plus process start-up.
Before the budget, a dead GCS endpoint took 246 s and ended in a RetryError traceback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from simclr.errors import UserError
from simclr.storage import timeouts

from tests.fixtures_gcs import free_port

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 5.0
# budget + interpreter/TensorFlow start-up on 2 shared cores; without the budget these
# took minutes (GCS retried for 120 s per call, S3 8 attempts of 60 s reads).
BOUND_S = 20.0


@pytest.fixture
def closed_port() -> int:
    return free_port()  # nothing listens there: connect() is refused


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        server.close()


def _store_env(scheme: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STORAGE_EMU"))}
    endpoint = f"http://127.0.0.1:{port}"
    if scheme == "gs":
        env["STORAGE_EMULATOR_HOST"] = endpoint
    else:
        env.update(
            AWS_ENDPOINT_URL_S3=endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
    env["SIMCLR_STORE_TIMEOUT"] = str(BUDGET_S)
    return env


def _task_args(task: str, remote: str, local: Path) -> list[str]:
    """The task reading its first input from `remote`, writing locally."""
    out = f"--output_dir={local / task}"
    return {
        "prepare_data": [f"--source={remote}/cifar-10-binary.tar.gz", out],
        "augment": [f"--data_dir={remote}", out],
        "pretrain": [f"--data_dir={remote}", out],
        "evaluate": [f"--data_dir={remote}", f"--model_dir={remote}/model", out],
        "embed": [f"--model_dir={remote}/model", f"--data_dir={remote}", out],
    }[task]


def _start(task: str, args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, float]:
    proc = subprocess.Popen(
        [sys.executable, "-m", f"simclr.tasks.{task}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    return proc, time.monotonic()


def _finish(proc: subprocess.Popen, started: float) -> tuple[int, str, float]:
    _, stderr = proc.communicate(timeout=300)
    return proc.returncode, stderr, time.monotonic() - started


def _assert_one_line_naming(stderr: str, uri_prefix: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    line = errors[0]
    assert line.startswith(f"error: {uri_prefix}"), line
    assert f"within {BUDGET_S:g} s (SIMCLR_STORE_TIMEOUT)" in line, line
    return line


TASKS = ["prepare_data", "augment", "pretrain", "evaluate", "embed"]


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_every_task_fails_fast_on_a_refusing_endpoint(scheme, closed_port, tmp_path):
    remote = f"{scheme}://dead-bucket/data"
    env = _store_env(scheme, closed_port)
    # All five at once: each waits on the store, not on the CPU.
    running = {t: _start(t, _task_args(t, remote, tmp_path), env) for t in TASKS}
    for task, (proc, started) in running.items():
        code, stderr, elapsed = _finish(proc, started)
        assert code == 2, f"{task}: exit {code}\n{stderr[-3000:]}"
        line = _assert_one_line_naming(stderr, f"{scheme}://dead-bucket/")
        assert "connection refused" in line, line
        assert elapsed < BOUND_S, f"{task}: {elapsed:.1f} s"
        print(f"{scheme} {task}: exit {code} in {elapsed:.1f} s: {line}")


# prepare_data downloads the archive (s3transfer's own download retries, not botocore's:
# once 17 s on a 5 s budget, a traceback at the end); pretrain reads the manifest.
@pytest.mark.parametrize("task", ["pretrain", "prepare_data"])
@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_task_fails_within_the_budget_on_a_silent_endpoint(scheme, task, silent_port, tmp_path):
    remote = f"{scheme}://silent-bucket/data"
    proc, started = _start(
        task, _task_args(task, remote, tmp_path), _store_env(scheme, silent_port)
    )
    code, stderr, elapsed = _finish(proc, started)
    assert code == 2, stderr[-3000:]
    line = _assert_one_line_naming(stderr, f"{scheme}://silent-bucket/")
    assert "timed out" in line, line
    assert elapsed < BOUND_S, f"{elapsed:.1f} s"
    print(f"{scheme} silent {task}: exit {code} in {elapsed:.1f} s: {line}")


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_silent_endpoint_uses_most_of_the_budget_not_one_attempt(scheme, silent_port):
    """In-process: a silent store is retried (not given up at the first read timeout) and
    still fails within the budget."""
    from simclr import storage

    env = _store_env(scheme, silent_port)
    env["SIMCLR_STORE_TIMEOUT"] = "6"
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        started = time.monotonic()
        with pytest.raises(UserError, match=rf"^{scheme}://b/k: cannot reach the"):
            storage.read_bytes(f"{scheme}://b/k")
        elapsed = time.monotonic() - started
    finally:
        os.environ.clear()
        os.environ.update(saved)
    read = timeouts.budget({"SIMCLR_STORE_TIMEOUT": "6"}).read
    assert 1.5 * read < elapsed <= 6.0 + 1.0, elapsed  # more than one attempt, within budget


@pytest.mark.parametrize("raw", ["0", "-3", "nan", "inf", "soon"])
def test_bad_budget_is_one_line(raw):
    with pytest.raises(UserError, match="^SIMCLR_STORE_TIMEOUT="):
        timeouts.budget({"SIMCLR_STORE_TIMEOUT": raw})


def test_budget_default_and_derived_timeouts():
    b = timeouts.budget({})
    assert (b.total, b.connect, b.read) == (60.0, 10.0, 20.0)
    assert timeouts.budget({"SIMCLR_STORE_TIMEOUT": "6"}).connect == 2.0


def test_store_dying_mid_run_ends_pretrain_in_bounded_time(tiny_prepared_data, tmp_path):
    """The store goes away while pretrain trains: the next checkpoint upload fails within
    the budget, shutdown (TensorBoard mirror's final sync, lease release) adds at most a
    budget each, and the run ends with one line naming an s3:// URI, exit 2."""
    import boto3

    from tests.fixtures_s3 import TEST_ENV, start_moto_server

    server, endpoint = start_moto_server()
    try:
        boto3.client("s3", endpoint_url=endpoint, **_boto_kwargs(TEST_ENV)).create_bucket(
            Bucket="dying"
        )
        env = _store_env("s3", int(endpoint.rsplit(":", 1)[1]))
        log = tmp_path / "pretrain.log"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "simclr.tasks.pretrain",
                f"--data_dir={tiny_prepared_data}",
                "--output_dir=s3://dying/run",
                f"--cache_dir={tmp_path / 'cache'}",
                "--encoder=resnet18",
                "--width_multiplier=0.125",
                "--batch_size=32",
                "--epochs=500",
                "--monitor_every_epochs=0",
                "--checkpoint_every_steps=4",
                "--log_every_steps=1",
                "--tensorboard_sync_seconds=1",
            ],
            stdout=log.open("w"),
            stderr=(tmp_path / "stderr.log").open("w"),
            cwd=REPO,
            env=env,
        )
        deadline = time.monotonic() + 180
        while " step 6/" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        server.kill()
        server.wait(timeout=10)
    killed = time.monotonic()
    proc.wait(timeout=300)
    elapsed = time.monotonic() - killed
    stderr = (tmp_path / "stderr.log").read_text()
    assert proc.returncode == 2, stderr[-3000:]
    line = _assert_one_line_naming(stderr, "s3://dying/run")
    # the failing upload, then at most the mirror's final sync and the lease release
    assert elapsed < 4 * BUDGET_S + 10, f"{elapsed:.1f} s"
    print(f"store died mid-run: exit 2 {elapsed:.1f} s after the kill: {line}")


def _boto_kwargs(env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }
