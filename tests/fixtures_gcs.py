"""GCS emulator fixtures (see conftest.py).

``gcs_emulator`` (session): a real ``gcp-storage-emulator`` subprocess, in memory, with
``STORAGE_EMULATOR_HOST`` set in ``os.environ`` for the session so that
google-cloud-storage in this process and in any subprocess talks to it.
``gcs_bucket`` (function): a fresh, uniquely named bucket, as ``"gs://<bucket>"``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

__all__ = ["free_port", "gcs_bucket", "gcs_emulator", "wait_for_http"]


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free a moment ago on 127.0.0.1 (all held open while
    choosing, so two calls of free_port cannot hand the same port to two workers)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_for_http(url: str, timeout_s: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers with any HTTP status (or fail after timeout_s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s")


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """Start the emulator; yields its URL, e.g. ``http://127.0.0.1:PORT``."""
    port = free_port()
    host = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gcp_storage_emulator",
            "start",
            "--host=127.0.0.1",
            f"--port={port}",
            "--in-memory",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    try:
        wait_for_http(f"{host}/storage/v1/b?project=test", proc=proc)
        os.environ["STORAGE_EMULATOR_HOST"] = host
        yield host
    finally:
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def gcs_bucket(gcs_emulator: str) -> str:
    """A new empty bucket in the emulator, as ``"gs://<name>"``."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="test", credentials=AnonymousCredentials())
    name = f"test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(name)
    return f"gs://{name}"
