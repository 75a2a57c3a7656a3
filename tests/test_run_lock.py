"""A run directory belongs to one run (issue 19): pretrain's --output_dir lock.

Two real pretrain processes on one --output_dir, locally (flock on DIR/.lock) and on the
S3 server and GCS emulator of tests/conftest.py (lease object DIR/.lock.json): the
second is refused with one line naming the owner, exit 2, before any work; a hard-killed
owner never blocks the next run (locally at once, remotely once its lease expires); a
clean exit releases the lock. The in-process tests pin the lease protocol.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from simclr import run_lock, storage
from simclr.errors import UserError
from simclr.storage.uri import store_for

from tests.fixtures_train import REPO, pretrain_cli

HOST = socket.gethostname()
TTL_S = 8  # short leases, so a hard-killed owner's expires within the test
LONG = [
    "--encoder=resnet18",
    "--width_multiplier=0.125",
    "--batch_size=32",
    "--epochs=500",  # ends by signal, long before this
    "--warmup_epochs=0",
    "--monitor_every_epochs=0",
    "--checkpoint_every_steps=100000",
    "--checkpoint_every_seconds=100000",
    "--log_every_steps=1",
    "--seed=5",
]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "simclr.tasks.pretrain", *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def _wait_for(what: str, predicate: Callable[[], object], proc, log: Path, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"no {what} within {timeout} s:\n{log.read_text()[-3000:]}")


def _local_owner(out: Path) -> dict | None:
    try:
        return json.loads((out / run_lock.LOCAL_NAME).read_text() or "null")
    except (OSError, ValueError):
        return None


def _lease(out: str) -> dict | None:
    found = store_for(out).read_versioned(storage.join(out, run_lock.LEASE_NAME))
    return json.loads(found[0]) if found else None


def _stop_cleanly(proc: subprocess.Popen, log: Path) -> None:
    """SIGTERM once training runs (the handler is installed): checkpoint, exit 143."""
    _wait_for("a training step", lambda: " step 2/" in log.read_text(), proc, log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, log.read_text()[-3000:]


def test_local_second_writer_is_refused_and_a_killed_owner_never_blocks(
    tiny_prepared_data, tmp_path
):
    out = tmp_path / "run"
    args = [f"--data_dir={tiny_prepared_data}", f"--output_dir={out}", *LONG]
    first = _start(args, tmp_path / "first.log")
    try:
        owner = _wait_for(
            "the lock",
            lambda: (o := _local_owner(out)) and o.get("pid") == first.pid and o,
            first,
            tmp_path / "first.log",
        )
        started = time.monotonic()
        second = pretrain_cli(args, timeout=120)
        refused_in = time.monotonic() - started
        assert second.returncode == 2, second.stderr[-3000:]
        assert _error_lines(second.stderr) == [
            f"error: {out} is in use by pid {first.pid} on {HOST} (locked since "
            f"{owner['created']}, until that process exits): wait for it to end or use "
            "another --output_dir"
        ], second.stderr[-3000:]
        assert "strategy" not in second.stdout  # refused before the Trainer was built
        assert first.poll() is None  # the owner trains on
        print(f"local refusal: exit 2 in {refused_in:.1f} s: {_error_lines(second.stderr)[0]}")
    finally:
        first.kill()  # SIGKILL: no chance to release anything
        first.wait(timeout=60)
    assert (out / run_lock.LOCAL_NAME).exists()  # left behind, but no longer locked

    third = _start(args, tmp_path / "third.log")
    try:
        _wait_for(
            "the lock taken from a dead owner",
            lambda: (_local_owner(out) or {}).get("pid") == third.pid,
            third,
            tmp_path / "third.log",
        )
        _stop_cleanly(third, tmp_path / "third.log")
    finally:
        third.kill()
    assert not (out / run_lock.LOCAL_NAME).exists()  # released on exit (143 included)


@pytest.mark.parametrize("store", ["s3_bucket", "gcs_bucket"])
def test_object_store_lease_refuses_second_writer_renews_and_expires(
    store, request, tiny_prepared_data, tmp_path
):
    bucket = request.getfixturevalue(store)
    out = f"{bucket}/run"
    env = {run_lock.TTL_ENV: str(TTL_S)}
    args = [f"--data_dir={tiny_prepared_data}", f"--output_dir={out}", *LONG]
    first_log = tmp_path / "first.log"
    first = _start(args, first_log, env)
    try:
        lease = _wait_for(
            "the lease",
            lambda: (le := _lease(out)) and le.get("pid") == first.pid and le,
            first,
            first_log,
        )
        assert lease["host"] == HOST and lease["expires_unix"] - time.time() <= TTL_S
        time.sleep(TTL_S / 2)  # two renewals (every TTL/4)
        renewed = _lease(out)
        assert renewed["owner"] == lease["owner"]
        assert renewed["expires_unix"] > lease["expires_unix"] + TTL_S / 8, (lease, renewed)

        started = time.monotonic()
        second = pretrain_cli(args, env=env, timeout=120)
        refused_in = time.monotonic() - started
        assert second.returncode == 2, second.stderr[-3000:]
        lines = _error_lines(second.stderr)
        pattern = (
            rf"error: {re.escape(out)} is in use by pid {first.pid} on {re.escape(HOST)} "
            r"\(lease until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\): wait for it to end or use "
            r"another --output_dir"
        )
        assert len(lines) == 1 and re.fullmatch(pattern, lines[0]), second.stderr[-3000:]
        assert "strategy" not in second.stdout
        assert first.poll() is None
        print(f"{store} refusal: exit 2 in {refused_in:.1f} s: {lines[0]}")
    finally:
        first.kill()
        first.wait(timeout=60)
    stale = _lease(out)
    assert stale is not None and stale["pid"] == first.pid  # a hard kill releases nothing
    # A live owner's lease always has more than TTL/2 left; this one's is running out.
    time.sleep(max(0.0, stale["expires_unix"] - time.time() - TTL_S / 2 + 0.5))

    third_log = tmp_path / "third.log"
    third = _start(args, third_log, env)
    try:
        _wait_for(
            "the expired lease taken over",
            lambda: ((_lease(out) or {}).get("pid")) == third.pid,
            third,
            third_log,
        )
        assert f"took over the expired lease of pid {first.pid} on {HOST}" in third_log.read_text()
        _stop_cleanly(third, third_log)
    finally:
        third.kill()
    assert _lease(out) is None  # released on exit


# ----------------------------------------------------------------------------- in-process


def _quiet(messages: list[str]) -> Callable[[str], None]:
    return messages.append


def test_conditional_create_refuses_an_existing_object(s3_bucket):
    """The race the read-first check cannot close: two creators that both saw no lease.
    S3's If-None-Match: * lets only the first write succeed (moto implements it)."""
    uri = f"{s3_bucket}/run/{run_lock.LEASE_NAME}"
    store = store_for(uri)
    token = store.create_if_absent(uri, b"first")
    assert token is not None
    assert store.create_if_absent(uri, b"second") is None
    assert store.read_versioned(uri) == (b"first", token)
    assert store.replace_if(uri, b"stale writer", '"0123456789abcdef0123456789abcdef"') is None
    assert store.replace_if(uri, b"owner", token) is not None
    assert store.read_versioned(uri)[0] == b"owner"


def test_lost_lease_stops_the_old_owner_and_release_spares_the_new_one(s3_bucket):
    out = f"{s3_bucket}/run"
    messages: list[str] = []
    old = run_lock.RunLock(out, ttl=2, log=_quiet(messages))
    old.acquire()
    old._stop.set()  # the owner stalls: no more renewals (as if paused past its TTL)
    old._thread.join(timeout=5)
    time.sleep(2.2)
    new = run_lock.RunLock(out, ttl=2, log=_quiet(messages))
    new.acquire()
    assert any("took over the expired lease" in m for m in messages), messages
    with pytest.raises(UserError, match=r"this run lost its lease"):
        old.check()
    old.release()  # must not delete the new owner's lease
    assert _lease(out)["owner"] == new.owner["owner"]
    new.check()
    new.release()
    assert _lease(out) is None


def test_renewal_that_finds_another_owner_marks_the_lease_lost(s3_bucket):
    out = f"{s3_bucket}/run"
    lock = run_lock.RunLock(out, ttl=60, log=_quiet([]))
    lock.acquire()
    try:
        uri = storage.join(out, run_lock.LEASE_NAME)
        storage.write_bytes(uri, json.dumps({"owner": "intruder", "pid": 1, "host": "h"}).encode())
        lock._renew()
        with pytest.raises(
            UserError, match=r"lost its lease \(the lease was taken by pid 1 on h\)"
        ):
            lock.check()
    finally:
        lock.release()
    assert _lease(out)["owner"] == "intruder"  # not ours: left alone


@pytest.mark.parametrize(
    "strategy, tf_config, chief",
    [
        ("auto", None, True),
        ("default", None, True),
        (
            "multi_worker",
            {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}},
            True,
        ),
        (
            "auto",
            {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}},
            False,
        ),
        (
            "auto",
            {
                "cluster": {"chief": ["c:1"], "worker": ["a:1"]},
                "task": {"type": "chief", "index": 0},
            },
            True,
        ),
        (
            "auto",
            {
                "cluster": {"chief": ["c:1"], "worker": ["a:1"]},
                "task": {"type": "worker", "index": 0},
            },
            False,
        ),
        # Not a multi-worker run: each process is its own run and locks for itself.
        (
            "mirrored",
            {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}},
            True,
        ),
    ],
)
def test_only_the_chief_of_a_multi_worker_run_takes_the_lock(
    monkeypatch, strategy, tf_config, chief
):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert run_lock.is_chief_task(strategy) is chief


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "later"])
def test_bad_lease_ttl_is_one_line(raw):
    with pytest.raises(UserError, match=f"^{run_lock.TTL_ENV}="):
        run_lock.lease_ttl({run_lock.TTL_ENV: raw})
