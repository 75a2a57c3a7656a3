"""``gs://bucket/key`` through google-cloud-storage.

Never TensorFlow's own gs:// file system: only the client library can be pointed at an
emulator (``STORAGE_EMULATOR_HOST``). Transient errors (429/5xx, connection resets,
timeouts) are retried with exponential backoff within the store budget
(``SIMCLR_STORE_TIMEOUT``, storage/timeouts.py); 404/403 fail at once. Every request has
connect and read timeouts, so a dead or silent endpoint fails within the budget.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from typing import Any

from simclr.errors import UserError
from simclr.storage import timeouts
from simclr.storage.base import ObjectInfo, ObjectStore
from simclr.storage.local import atomic_local_write, local_errors
from simclr.storage.uri import dir_prefix, split


def _retry():
    """Storage's own transient-error predicate, with a quicker first backoff.

    Every call we make passes this explicitly. For uploads that is a deliberate
    choice: the library only retries uploads carrying ``if_generation_match``, but our
    uploads are whole-object overwrites with deterministic content (last writer wins),
    so repeating one after an ambiguous failure cannot corrupt anything.
    """
    from google.cloud.storage.retry import DEFAULT_RETRY

    # No new attempt starts after total - read, so the last one ends within the budget.
    b = timeouts.budget()
    return DEFAULT_RETRY.with_delay(initial=0.5, maximum=16.0, multiplier=2.0).with_timeout(
        b.total - b.read
    )


def _kw() -> dict[str, Any]:
    """retry= and timeout= (connect, read) for one call: both from the store budget."""
    b = timeouts.budget()
    return {"retry": _retry(), "timeout": (b.connect, b.read)}


@contextlib.contextmanager
def _transport_errors(uri: str) -> Iterator[None]:
    """An endpoint that stayed dead, silent or failing for the whole budget: one line."""
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    try:
        yield
    except (
        gexc.RetryError,
        requests.exceptions.RequestException,
        auth_exc.TransportError,
        ConnectionError,
        TimeoutError,
    ) as e:
        raise UserError(timeouts.unreachable_message(uri, "GCS", e)) from e


@functools.cache
def _client_for(pid: int, emulator_host: str | None, project: str | None):
    """One client per process (pid) and endpoint; the library reads the emulator env."""
    del pid  # only part of the cache key: clients must not cross fork()
    from google.cloud import storage

    if emulator_host:
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project="test", credentials=AnonymousCredentials())
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return storage.Client(project=project)
    except DefaultCredentialsError as e:
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"gs:// access needs Google Cloud credentials: {first_line}") from e


def _client():
    return _client_for(
        os.getpid(),
        os.environ.get("STORAGE_EMULATOR_HOST") or None,
        os.environ.get("GOOGLE_CLOUD_PROJECT") or None,
    )


def _blob(uri: str):
    bucket, key = split(uri)
    if not key:
        raise UserError(f"{uri}: URI names a bucket, not an object")
    return _client().bucket(bucket).blob(key)


def _bucket_exists(bucket: str) -> bool | None:
    """Whether the bucket exists; None when we may not ask (403)."""
    from google.api_core import exceptions as gexc

    try:
        with _transport_errors(f"gs://{bucket}"):
            return _client().bucket(bucket).exists(**_kw())
    except gexc.Forbidden:
        return None


@contextlib.contextmanager
def _errors(uri: str, *, missing_ok: bool = False) -> Iterator[None]:
    """Turn permanent google-cloud-storage errors into one-line UserErrors."""
    from google.api_core import exceptions as gexc

    try:
        with _transport_errors(uri):
            yield
    except gexc.NotFound as e:
        if missing_ok:
            return
        bucket, _ = split(uri)
        if _bucket_exists(bucket) is False:
            raise UserError(f"{uri}: bucket '{bucket}' does not exist") from e
        raise UserError(f"{uri}: not found") from e
    except (gexc.Forbidden, gexc.Unauthorized) as e:
        raise UserError(f"{uri}: permission denied") from e
    except gexc.GoogleAPICallError as e:  # e.g. a 5xx still failing when the budget ran out
        raise UserError(f"{uri}: GCS request failed: {e.code} {e.message}".rstrip()) from e


class GcsStore(ObjectStore):
    def read_bytes(self, uri: str) -> bytes:
        with _errors(uri):
            return _blob(uri).download_as_bytes(**_kw())

    def read_from(self, uri: str, start: int) -> bytes:
        with _errors(uri):
            return _blob(uri).download_as_bytes(start=start, **_kw())

    def write_bytes(self, uri: str, data: bytes) -> None:
        with _errors(uri):
            _blob(uri).upload_from_string(bytes(data), **_kw())

    def upload_file(self, local: str, uri: str) -> None:
        with _errors(uri), local_errors(local):
            _blob(uri).upload_from_filename(local, **_kw())

    def download_file(self, uri: str, local: str) -> None:
        blob = _blob(uri)
        with _errors(uri):
            atomic_local_write(local, lambda f: blob.download_to_file(f, **_kw()))

    def _blobs(self, uri: str) -> dict[str, Any]:
        bucket, key = split(uri)
        prefix = dir_prefix(key)
        with _errors(uri):
            blobs = list(_client().list_blobs(bucket, prefix=prefix, **_kw()))
        # "dir/" placeholder objects (made by some tools) are not files
        return {b.name[len(prefix) :]: b for b in blobs if not b.name.endswith("/")}

    def list(self, uri: str) -> dict[str, ObjectInfo]:
        return {rel: ObjectInfo(b.size, b.md5_hash) for rel, b in self._blobs(uri).items()}

    def is_file(self, uri: str) -> bool:
        _, key = split(uri)
        with _errors(uri, missing_ok=True):
            return bool(key) and _blob(uri).exists(**_kw())
        return False

    def exists(self, uri: str) -> bool:
        from google.api_core import exceptions as gexc

        bucket, key = split(uri)
        try:
            with _transport_errors(uri):
                if key and _client().bucket(bucket).blob(key).exists(**_kw()):
                    return True
                blobs = _client().list_blobs(bucket, prefix=dir_prefix(key), max_results=1, **_kw())
                return any(True for _ in blobs)
        except gexc.NotFound:
            return False

    def delete(self, uri: str) -> None:
        with _errors(uri, missing_ok=True):
            _blob(uri).delete(**_kw())

    def delete_prefix(self, uri: str) -> None:
        try:
            blobs = self._blobs(uri)
        except UserError:
            if _bucket_exists(split(uri)[0]) is False:
                return
            raise
        for rel, blob in blobs.items():
            with _errors(f"{uri.rstrip('/')}/{rel}", missing_ok=True):
                blob.delete(**_kw())

    def check_writable_location(self, uri: str) -> None:
        bucket, _ = split(uri)
        if _bucket_exists(bucket) is False:
            raise UserError(f"{uri}: bucket '{bucket}' does not exist")

    # -- conditional writes: generation preconditions (ifGenerationMatch; 0 = absent)

    def read_versioned(self, uri: str) -> tuple[bytes, str] | None:
        from google.api_core import exceptions as gexc

        bucket, key = split(uri)
        with _errors(uri):
            blob = _client().bucket(bucket).get_blob(key, **_kw())
            if blob is None:
                return None
            # Read before the download: it resets the properties from response headers.
            generation = blob.generation
            try:
                data = blob.download_as_bytes(if_generation_match=generation, **_kw())
            except (gexc.NotFound, gexc.PreconditionFailed):
                return None  # replaced or deleted between the two requests: ask again
        return data, str(generation)

    def create_if_absent(self, uri: str, data: bytes) -> str | None:
        return self._upload_if(uri, data, 0)

    def replace_if(self, uri: str, data: bytes, token: str) -> str | None:
        return self._upload_if(uri, data, int(token))

    def _upload_if(self, uri: str, data: bytes, generation: int) -> str | None:
        from google.api_core import exceptions as gexc

        blob = _blob(uri)
        try:
            with _errors(uri):
                blob.upload_from_string(bytes(data), if_generation_match=generation, **_kw())
        except UserError as e:
            if isinstance(e.__cause__, (gexc.PreconditionFailed, gexc.NotFound)):
                return None
            raise
        return str(blob.generation)
