"""``s3://bucket/key`` through boto3: AWS S3 and S3-compatible stores (MinIO, Ceph, ...).

Configured the way S3 users already do it: boto3 reads ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and ``~/.aws/*``,
``AWS_REGION`` / ``AWS_DEFAULT_REGION`` and ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``.
A non-AWS endpoint gets path-style addressing (``http://minio:9000/bucket/key``: no
per-bucket DNS names there). Throttling, 5xx and connection errors are retried by
botocore's "standard" retry mode with exponential backoff, within the store budget
(``SIMCLR_STORE_TIMEOUT``, storage/timeouts.py): every request has connect and read
timeouts derived from it, and no retry starts that could end past it, so a dead or
silent endpoint fails within the budget instead of hanging.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import threading
import time
from collections.abc import Iterator

from simclr.errors import UserError
from simclr.storage import timeouts
from simclr.storage.base import ObjectInfo, ObjectStore
from simclr.storage.local import atomic_local_write, local_errors
from simclr.storage.uri import dir_prefix, split

MAX_ATTEMPTS = 8  # per request, first try included; the store budget bounds them too
_MAX_BACKOFF_S = 20.0  # botocore standard mode's cap on the sleep between tries
MULTIPART_THRESHOLD = 64 * 1024 * 1024  # below this one PUT, so the ETag is the MD5
_BODY_ATTEMPTS = 4  # reading a response body that broke off mid-way
_DELETE_BATCH = 1000  # DeleteObjects' limit
# Error codes meaning "these credentials are wrong", as opposed to "not allowed".
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "InvalidClientTokenId",
    "AuthorizationHeaderMalformed",
}
_NOT_FOUND_CODES = {"NoSuchKey", "NotFound", "404"}
_DENIED_CODES = {"AccessDenied", "Forbidden", "AllAccessDisabled", "403"}
_lock = threading.Lock()


@functools.cache
def _client_for(pid: int, aws_env: tuple[tuple[str, str], ...], budget: timeouts.Budget):
    """One client per process, AWS configuration (boto3 reads the env itself) and budget."""
    del pid, aws_env  # cache key only: clients must not cross fork(); env changes = new client
    import boto3
    import botocore.session
    from botocore import exceptions as bexc
    from botocore.config import Config

    try:
        core = botocore.session.get_session()
        # Our retry defaults, unless the user set them the AWS way (AWS_MAX_ATTEMPTS,
        # AWS_RETRY_MODE or the config file).
        config = Config(
            connect_timeout=budget.connect,
            read_timeout=budget.read,
            retries={
                "mode": core.get_config_variable("retry_mode") or "standard",
                "max_attempts": core.get_config_variable("max_attempts") or MAX_ATTEMPTS,
            },
        )
        session = boto3.session.Session(botocore_session=core)
        client = session.client("s3", config=config)
        if "amazonaws.com" not in client.meta.endpoint_url:
            # MinIO & co: path-style URLs, and checksums only where the API requires
            # them (several S3-compatible servers reject botocore's default trailers).
            compat = Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            client = session.client("s3", config=config.merge(compat))
    except (bexc.ProfileNotFound, bexc.InvalidConfigError, ValueError) as e:
        raise UserError(f"s3:// access: bad AWS configuration: {e}") from e
    _add_deadline(client, budget)
    return client


def _add_deadline(client, budget: timeouts.Budget) -> None:
    """No retry of a failed attempt once another one could end past the budget.

    botocore has attempts, not deadlines. Its ``needs-retry`` handlers all run and the
    first answer that is not None decides, so a handler registered first that answers
    False ("do not retry") vetoes the retry mode's sleep-and-retry; None defers to it.
    """
    started_key = "simclr_started"

    def mark_start(params, **_):
        params.setdefault("context", {})[started_key] = time.monotonic()

    def deadline(request_dict, attempts, response=None, caught_exception=None, **_):
        failed = caught_exception is not None or (
            response is not None and response[0].status_code >= 500
        )
        started = (request_dict.get("context") or {}).get(started_key)
        if not failed or started is None:
            return None
        # standard mode sleeps rand * min(base * 2**(attempts - 1), 20 s), base 1 s for
        # throttling (50 ms otherwise): the longest sleep, then a whole silent attempt.
        worst_next = min(_MAX_BACKOFF_S, 2.0 ** (attempts - 1)) + budget.read
        return False if time.monotonic() - started + worst_next > budget.total else None

    client.meta.events.register("before-call.s3", mark_start)
    client.meta.events.register_first("needs-retry.s3", deadline)


def _client():
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    budget = timeouts.budget()
    with _lock:  # boto3 sessions are not thread-safe to create; clients are to use
        return _client_for(os.getpid(), env, budget)


def _transfer_config():
    from boto3.s3.transfer import TransferConfig

    # One s3transfer attempt: botocore's retries (bounded by the budget) already cover each
    # request, and s3transfer's own download retries (5) would multiply the time past it.
    return TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD, max_concurrency=4, num_download_attempts=1
    )


def _object(uri: str) -> tuple[str, str]:
    bucket, key = split(uri)
    if not key:
        raise UserError(f"{uri}: URI names a bucket, not an object")
    return bucket, key


def _code(err) -> tuple[str, int | None]:
    """(error code, HTTP status) of a botocore ClientError."""
    code = str(err.response.get("Error", {}).get("Code", ""))
    return code, err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _bucket_exists(bucket: str) -> bool | None:
    """Whether the bucket exists; None when we may not ask (403)."""
    from botocore.exceptions import ClientError

    try:
        _client().head_bucket(Bucket=bucket)
        return True
    except ClientError as e:
        code, status = _code(e)
        if code in ("404", "NoSuchBucket", "NotFound") or status == 404:
            return False
        return None


def _why_denied(bucket: str) -> str:
    """For a bodiless 403 (HEAD): ask once more with a request whose error has a code."""
    from botocore.exceptions import ClientError

    try:
        _client().list_objects_v2(Bucket=bucket, MaxKeys=1)
    except ClientError as e:
        code, _ = _code(e)
        if code in _CREDENTIAL_CODES:
            return f"the S3 endpoint rejected the credentials ({code})"
    return "permission denied"


def _client_error(uri: str, err, missing_ok: bool) -> UserError | None:
    """The one-line UserError for a ClientError (None: ignore it, as missing_ok asks)."""
    bucket = split(uri)[0]
    code, status = _code(err)
    if code == "NoSuchBucket":
        return None if missing_ok else UserError(f"{uri}: bucket '{bucket}' does not exist")
    if code in _NOT_FOUND_CODES or status == 404:
        if missing_ok:
            return None
        if _bucket_exists(bucket) is False:
            return UserError(f"{uri}: bucket '{bucket}' does not exist")
        return UserError(f"{uri}: not found")
    if code in _CREDENTIAL_CODES:
        return UserError(f"{uri}: the S3 endpoint rejected the credentials ({code})")
    if code == "403":
        return UserError(f"{uri}: {_why_denied(bucket)}")
    if code in _DENIED_CODES or status == 403:
        return UserError(f"{uri}: permission denied")
    message = err.response.get("Error", {}).get("Message", "")
    return UserError(f"{uri}: S3 request failed: {code or status} {message}".rstrip())


@contextlib.contextmanager
def _errors(uri: str, *, missing_ok: bool = False) -> Iterator[None]:
    """Turn permanent (or retried to exhaustion) S3 errors into one-line UserErrors."""
    from boto3.exceptions import S3UploadFailedError
    from botocore import exceptions as bexc
    from s3transfer.exceptions import RetriesExceededError

    try:
        yield
    except bexc.ClientError as e:
        error = _client_error(uri, e, missing_ok)
        if error is not None:
            raise error from e
    except S3UploadFailedError as e:  # a multipart upload: the ClientError is its context
        cause = e.__context__
        if isinstance(cause, bexc.ClientError):
            error = _client_error(uri, cause, missing_ok=False)
            raise (error or UserError(f"{uri}: {e}")) from e
        raise UserError(f"{uri}: {e}") from e
    except (bexc.NoCredentialsError, bexc.PartialCredentialsError) as e:
        raise UserError(
            f"{uri}: no AWS credentials found ({e}); set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        ) from e
    except (bexc.ConnectionError, bexc.HTTPClientError) as e:  # after the retries
        raise UserError(timeouts.unreachable_message(uri, "S3", e)) from e
    except RetriesExceededError as e:  # s3transfer's download gave up (its cause inside)
        raise UserError(timeouts.unreachable_message(uri, "S3", e.last_exception or e)) from e


def _md5_from_etag(etag: str) -> str | None:
    """A single-part object's ETag is the hex MD5 of its bytes; multipart ones are not."""
    etag = etag.strip('"')
    if len(etag) != 32 or "-" in etag:
        return None
    try:
        return base64.b64encode(bytes.fromhex(etag)).decode("ascii")
    except ValueError:
        return None


class S3Store(ObjectStore):
    def _get(self, uri: str, **extra) -> bytes:
        """GetObject; a body that breaks off mid-way is fetched again (botocore retries
        only the request, not the streaming of its body)."""
        from botocore import exceptions as bexc

        bucket, key = _object(uri)
        budget, started = timeouts.budget(), time.monotonic()
        for attempt in range(_BODY_ATTEMPTS):
            with _errors(uri):
                body = _client().get_object(Bucket=bucket, Key=key, **extra)["Body"]
            attempt_started = time.monotonic()
            try:
                return body.read()
            except (bexc.ResponseStreamingError, bexc.ReadTimeoutError) as e:
                if time.monotonic() - attempt_started > budget.total:
                    started = time.monotonic()  # a long transfer broke off: a fresh budget
                pause = 0.5 * 2**attempt
                out_of_time = time.monotonic() - started + pause + budget.read > budget.total
                if attempt == _BODY_ATTEMPTS - 1 or out_of_time:
                    raise UserError(f"{uri}: download kept failing: {e}") from e
                time.sleep(pause)
        raise AssertionError("unreachable")

    def read_bytes(self, uri: str) -> bytes:
        return self._get(uri)

    def read_from(self, uri: str, start: int) -> bytes:
        if start == 0:
            return self._get(uri)
        from botocore.exceptions import ClientError

        try:
            return self._get(uri, Range=f"bytes={start}-")
        except UserError as e:
            cause = e.__cause__
            if isinstance(cause, ClientError) and _code(cause)[0] == "InvalidRange":
                return b""  # nothing past start
            raise

    def write_bytes(self, uri: str, data: bytes) -> None:
        bucket, key = _object(uri)
        with _errors(uri):
            _client().put_object(Bucket=bucket, Key=key, Body=bytes(data))

    def upload_file(self, local: str, uri: str) -> None:
        bucket, key = _object(uri)
        with _errors(uri), local_errors(local):
            if os.path.getsize(local) < MULTIPART_THRESHOLD:
                with open(local, "rb") as f:  # botocore rewinds it for a retry
                    _client().put_object(Bucket=bucket, Key=key, Body=f)
            else:
                _client().upload_file(local, bucket, key, Config=_transfer_config())

    def download_file(self, uri: str, local: str) -> None:
        bucket, key = _object(uri)
        with _errors(uri):
            atomic_local_write(
                local,
                lambda f: _client().download_fileobj(bucket, key, f, Config=_transfer_config()),
            )

    def list(self, uri: str) -> dict[str, ObjectInfo]:
        bucket, key = split(uri)
        prefix = dir_prefix(key)
        out = {}
        with _errors(uri):
            pages = (
                _client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    if not obj["Key"].endswith("/"):  # "dir/" placeholders are not files
                        rel = obj["Key"][len(prefix) :]
                        out[rel] = ObjectInfo(obj["Size"], _md5_from_etag(obj.get("ETag", "")))
        return out

    def is_file(self, uri: str) -> bool:
        bucket, key = split(uri)
        if not key:
            return False
        with _errors(uri, missing_ok=True):
            _client().head_object(Bucket=bucket, Key=key)
            return True
        return False

    def exists(self, uri: str) -> bool:
        bucket, key = split(uri)
        if self.is_file(uri):
            return True
        with _errors(uri, missing_ok=True):
            page = _client().list_objects_v2(Bucket=bucket, Prefix=dir_prefix(key), MaxKeys=1)
            return bool(page.get("KeyCount") or page.get("Contents"))
        return False

    def delete(self, uri: str) -> None:
        bucket, key = _object(uri)
        with _errors(uri, missing_ok=True):
            _client().delete_object(Bucket=bucket, Key=key)

    def delete_prefix(self, uri: str) -> None:
        bucket, key = split(uri)
        if _bucket_exists(bucket) is False:
            return
        prefix = dir_prefix(key)
        keys = [prefix + rel for rel in self.list(uri)]
        with _errors(uri, missing_ok=True):
            for i in range(0, len(keys), _DELETE_BATCH):
                batch = [{"Key": k} for k in keys[i : i + _DELETE_BATCH]]
                result = _client().delete_objects(
                    Bucket=bucket, Delete={"Objects": batch, "Quiet": True}
                )
                if result.get("Errors"):
                    first = result["Errors"][0]
                    raise UserError(
                        f"{uri}: could not delete {first.get('Key')}: {first.get('Code')}"
                    )

    def check_writable_location(self, uri: str) -> None:
        bucket, _ = split(uri)
        if _bucket_exists(bucket) is False:
            raise UserError(f"{uri}: bucket '{bucket}' does not exist")

    # -- conditional writes: If-None-Match: * and If-Match: <ETag> on PutObject (AWS since
    # 2024, MinIO, moto). A server that ignores them overwrites: run_lock reads back.

    def read_versioned(self, uri: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import ClientError

        bucket, key = _object(uri)
        try:
            with _errors(uri):
                response = _client().get_object(Bucket=bucket, Key=key)
                return response["Body"].read(), response["ETag"]
        except UserError as e:
            cause = e.__cause__
            if isinstance(cause, ClientError) and _code(cause)[0] in _NOT_FOUND_CODES:
                return None
            raise

    def create_if_absent(self, uri: str, data: bytes) -> str | None:
        return self._put_if(uri, data, IfNoneMatch="*")

    def replace_if(self, uri: str, data: bytes, token: str) -> str | None:
        return self._put_if(uri, data, IfMatch=token)

    def _put_if(self, uri: str, data: bytes, **condition: str) -> str | None:
        from botocore.exceptions import ClientError

        bucket, key = _object(uri)
        try:
            with _errors(uri):
                response = _client().put_object(Bucket=bucket, Key=key, Body=data, **condition)
        except UserError as e:
            cause = e.__cause__
            # 412: the condition failed; 409: a concurrent conditional write won; 404: an
            # If-Match target vanished.
            if isinstance(cause, ClientError) and (
                _code(cause)[1] in (409, 412) or _code(cause)[0] in _NOT_FOUND_CODES
            ):
                return None
            raise
        return response["ETag"]
