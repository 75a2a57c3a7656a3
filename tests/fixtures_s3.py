"""S3-compatible server fixtures (see conftest.py).

``s3_server`` (session): a real moto server subprocess (``python -m moto.server``) on
127.0.0.1, with the standard AWS variables (endpoint, keys, region) set in
``os.environ`` for the session, so boto3 in this process and in any subprocess talks to
it exactly as it would to MinIO. ``s3_bucket`` (function): a fresh bucket, as
``"s3://<name>"``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.fixtures_gcs import free_port, wait_for_http

__all__ = ["s3_bucket", "s3_server", "start_moto_server"]

TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def start_moto_server(extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """A moto server process on a free port; returns (process, endpoint URL)."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(extra_env or {})},
    )
    try:
        wait_for_http(f"{endpoint}/moto-api/", proc=proc)
    except BaseException:
        proc.kill()
        raise
    return proc, endpoint


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Start the server; yields its endpoint URL, e.g. ``http://127.0.0.1:PORT``."""
    proc, endpoint = start_moto_server()
    env = {**TEST_ENV, "AWS_ENDPOINT_URL_S3": endpoint}
    previous = {k: os.environ.get(k) for k in [*env, "AWS_PROFILE", "AWS_ENDPOINT_URL"]}
    try:
        os.environ.pop("AWS_PROFILE", None)
        os.environ.pop("AWS_ENDPOINT_URL", None)
        os.environ.update(env)
        yield endpoint
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        proc.kill()
        proc.wait(timeout=10)


def s3_client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, **_client_kwargs())


def _client_kwargs() -> dict[str, str]:
    return {
        "aws_access_key_id": TEST_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": TEST_ENV["AWS_DEFAULT_REGION"],
    }


@pytest.fixture
def s3_bucket(s3_server: str) -> str:
    """A new empty bucket on the server, as ``"s3://<name>"``."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_client(s3_server).create_bucket(Bucket=name)
    return f"s3://{name}"
