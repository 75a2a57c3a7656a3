"""s3:// specifics against a real S3-compatible server (moto) on 127.0.0.1: the AWS
configuration, one-line errors for a missing bucket and bad credentials, retries of
transient faults injected by a proxy, and URIs with schemes we do not support."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import botocore.endpoint
import pytest
from simclr import storage
from simclr.errors import UserError
from simclr.storage import s3 as s3_store

from tests.fixtures_gcs import free_port
from tests.fixtures_proxy import RESET, FaultProxy
from tests.fixtures_s3 import start_moto_server
from tests.test_storage import assert_missing_bucket_fails_fast

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("uri", ["s3a://b/x", "az://c/x", "gcs://b/x", "hdfs://nn/x", "S3://b/x"])
def test_unsupported_schemes_are_refused_naming_the_supported_ones(uri, tmp_path):
    message = f"^{uri}: unsupported URI scheme '.+://' \\(supported: gs://, s3://, file://, a local path\\)$"
    for call in [
        lambda: storage.write_bytes(uri, b"x"),
        lambda: storage.read_bytes(uri),
        lambda: storage.list_files(uri),
        lambda: storage.makedirs(uri),
        lambda: storage.is_remote(uri),
        lambda: storage.atomic_dir(uri).__enter__(),
    ]:
        with pytest.raises(UserError, match=message):
            call()
    assert os.listdir(tmp_path) == []


def test_unsupported_scheme_fails_the_task_instead_of_writing_a_local_folder(tmp_path):
    """The bug this replaces: s3:-like URIs became a local folder named 's3a:'."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "simclr.tasks.augment",
            "--data_dir=s3a://bucket/data",
            "--output_dir=s3a://bucket/out",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.path.join(REPO, "components")},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "unsupported URI scheme 's3a://'" in errors[0], result.stderr
    assert os.listdir(tmp_path) == []


def test_file_uris_are_local(tmp_path):
    uri = f"file://{tmp_path}/d/f.txt"
    storage.write_text(uri, "hi")
    assert not storage.is_remote(uri)
    assert (tmp_path / "d/f.txt").read_text() == "hi"
    assert storage.list_files(f"file://{tmp_path}/d") == ["f.txt"]
    assert storage.localize_dir(f"file://{tmp_path}/d") == f"{tmp_path}/d"


def test_missing_bucket_fails_fast_with_one_line(s3_server, tmp_path):
    uri = "s3://no-such-bucket-xyz/x"
    assert_missing_bucket_fails_fast(uri, tmp_path)
    storage.delete_dir(uri)  # nothing to delete: no error


def test_etag_gives_md5_so_localize_keeps_unchanged_files(s3_bucket, tmp_path, monkeypatch):
    uri = storage.join(s3_bucket, "d")
    storage.write_bytes(storage.join(uri, "a"), b"alpha")
    storage.write_bytes(storage.join(uri, "b"), b"beta")
    local = storage.localize_dir(uri, cache_root=str(tmp_path))
    inode = os.stat(os.path.join(local, "b")).st_ino
    storage.write_bytes(storage.join(uri, "a"), b"ALPHA")  # same size, other MD5
    assert storage.localize_dir(uri, cache_root=str(tmp_path)) == local
    assert open(os.path.join(local, "a"), "rb").read() == b"ALPHA"
    assert os.stat(os.path.join(local, "b")).st_ino == inode


@pytest.fixture(scope="module")
def auth_server() -> Iterator[dict[str, str]]:
    """A second moto server that checks credentials and permissions. Its first three
    requests go unchecked: they make a bucket and a user with a key but no permission."""
    import boto3

    proc, endpoint = start_moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
    try:
        setup = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        setup |= {"aws_access_key_id": "AKIASETUP", "aws_secret_access_key": "setup"}
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        boto3.client("s3", **setup).create_bucket(Bucket="locked")
        yield {
            "endpoint": endpoint,
            "key_id": key["AccessKeyId"],
            "secret": key["SecretAccessKey"],
        }
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _use(monkeypatch, endpoint: str, key_id: str, secret: str) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def _sent_requests(monkeypatch) -> list[str]:
    """The methods of the HTTP requests botocore sends (botocore/endpoint.py
    Endpoint._send), appended as they go. A permanent error must be one request, no
    retry: counted rather than timed, as a retry after a 50 ms backoff would pass a time
    limit and a loaded machine fails one."""
    sent: list[str] = []
    real_send = botocore.endpoint.Endpoint._send

    def counting_send(self, request):
        sent.append(request.method)
        return real_send(self, request)

    monkeypatch.setattr(botocore.endpoint.Endpoint, "_send", counting_send)
    return sent


def test_wrong_credentials_give_one_line(auth_server, monkeypatch, tmp_path):
    _use(monkeypatch, auth_server["endpoint"], "AKIAWRONGWRONGWRONG1", "wrong")
    uri = "s3://locked/x.json"
    message = f"^{uri}: the S3 endpoint rejected the credentials \\(InvalidAccessKeyId\\)$"
    sent = _sent_requests(monkeypatch)
    for call, method in [
        (lambda: storage.read_json(uri), "GET"),
        (lambda: storage.write_json(uri, {}), "PUT"),
        (lambda: storage.download_file(uri, str(tmp_path / "x")), "GET"),
    ]:
        sent.clear()
        with pytest.raises(UserError, match=message):
            call()
        assert sent == [method]
    with pytest.raises(UserError, match="^s3://locked: the S3 endpoint rejected the credentials"):
        storage.list_files("s3://locked")


def test_denied_requests_give_one_line(auth_server, monkeypatch, tmp_path):
    _use(monkeypatch, auth_server["endpoint"], auth_server["key_id"], auth_server["secret"])
    sent = _sent_requests(monkeypatch)
    uri = "s3://locked/x.json"
    for call, method in [
        (lambda: storage.read_json(uri), "GET"),
        (lambda: storage.write_json(uri, {}), "PUT"),
        (lambda: storage.download_file(uri, str(tmp_path / "x")), "GET"),
        (lambda: storage.list_files("s3://locked/x.json"), "GET"),
    ]:
        sent.clear()
        with pytest.raises(UserError, match=f"^{uri}: permission denied$"):
            call()
        assert sent == [method]
    assert not (tmp_path / "x").exists()


def test_no_credentials_at_all_give_one_line(s3_server, monkeypatch, tmp_path):
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(UserError, match="^s3://b/x: no AWS credentials found .*AWS_ACCESS_KEY_ID"):
        storage.read_bytes("s3://b/x")


def test_unknown_profile_is_one_line(s3_server, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(UserError, match="bad AWS configuration: .*no-such-profile"):
        storage.read_bytes("s3://b/x")


def test_unreachable_endpoint_fails_in_bounded_time(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # the AWS way to shorten the retries
    start = time.monotonic()
    with pytest.raises(UserError, match="^s3://b/x: cannot reach the S3 endpoint"):
        storage.read_bytes("s3://b/x")
    assert time.monotonic() - start < 10


@pytest.fixture
def s3_proxy(s3_server, monkeypatch) -> Iterator[FaultProxy]:
    with FaultProxy(s3_server, lambda _method, _path: True) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)  # a new cached client
        yield proxy


def test_transient_errors_and_resets_are_retried(s3_bucket, s3_proxy):
    uri = storage.join(s3_bucket, "flaky.json")
    bucket = s3_bucket.removeprefix("s3://")
    s3_proxy.fail_first = 2
    storage.write_json(uri, {"v": 1})
    assert s3_proxy.statuses() == [503, 503, 200]
    assert s3_proxy.requests[-1][2] == f"/{bucket}/flaky.json"  # path-style addressing

    s3_proxy.requests.clear()
    s3_proxy.fault, s3_proxy.fail_first = "reset", 2
    assert storage.read_json(uri) == {"v": 1}
    assert s3_proxy.statuses() == [RESET, RESET, 200]


def test_permanent_errors_are_not_retried(s3_bucket, s3_proxy):
    uri = storage.join(s3_bucket, "absent")
    with pytest.raises(UserError, match=f"^{uri}: not found$"):
        storage.read_bytes(uri)
    # asked once; then one look at the bucket to tell "no object" from "no bucket"
    assert [(m, s) for m, s, _ in s3_proxy.requests] == [("GET", 404), ("HEAD", 200)]


def test_multipart_upload_survives_a_failed_part(s3_bucket, s3_proxy, tmp_path, monkeypatch):
    monkeypatch.setattr(s3_store, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)  # S3's minimum part
    data = os.urandom(11 * 1024 * 1024)
    (tmp_path / "big").write_bytes(data)
    uri = storage.join(s3_bucket, "big/blob")
    s3_proxy.fail_method, s3_proxy.fail_first = "PUT", 1  # a part, not the start
    storage.upload_file(str(tmp_path / "big"), uri)
    storage.download_file(uri, str(tmp_path / "back"))
    assert (tmp_path / "back").read_bytes() == data
    parts = [(m, s) for m, s, path in s3_proxy.requests if "partNumber=" in path]
    assert ("PUT", 503) in parts and parts.count(("PUT", 200)) == 2  # 8 MB parts
    assert storage.list_files(s3_bucket) == ["big/blob"]


def test_make_tensorboard_on_a_missing_bucket_is_one_line(s3_server):
    uri = "s3://no-such-bucket-xyz/tb"
    result = subprocess.run(
        ["make", "-s", "tensorboard", f"LOGDIR={uri}", f"PORT={free_port()}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {uri}: bucket 'no-such-bucket-xyz' does not exist"], result.stderr


def test_global_endpoint_variable_and_profiles_are_honoured(
    s3_server, s3_bucket, monkeypatch, tmp_path
):
    """AWS_ENDPOINT_URL (what the pipeline's --s3_endpoint_url sets), and a named profile
    in the AWS config files with its own keys and endpoint."""
    uri = storage.join(s3_bucket, "cfg.txt")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    storage.write_text(uri, "via AWS_ENDPOINT_URL")
    assert storage.read_text(uri) == "via AWS_ENDPOINT_URL"

    monkeypatch.delenv("AWS_ENDPOINT_URL")
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"]:
        monkeypatch.delenv(name)
    (tmp_path / "config").write_text(
        f"[profile minio]\nregion = us-east-1\nendpoint_url = {s3_server}\n"
    )
    (tmp_path / "credentials").write_text(
        "[minio]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_PROFILE", "minio")
    assert storage.read_text(uri) == "via AWS_ENDPOINT_URL"
