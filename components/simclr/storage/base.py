"""The one interface every store (local, gs://, s3://, ...) implements.

Stores move whole objects between a URI and local files or bytes; everything else
(directories, atomic publishing, caching, mirroring) is built on these methods once,
in the modules beside this one. Every method raises ``UserError`` with a one-line
message naming the URI for permanent problems (not found, missing bucket, denied,
bad credentials) and retries transient ones (throttling, 5xx, resets) itself.
"""

from __future__ import annotations

import abc
import base64
import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing tells about one object: its size and, when known, its MD5."""

    size: int
    md5_b64: str | None = None  # base64 of the MD5 digest; None: not known (multipart...)


def md5_b64_of_file(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode("ascii")


class ObjectStore(abc.ABC):
    """Objects under ``scheme://bucket/key`` (or local files, for the local store)."""

    @abc.abstractmethod
    def read_bytes(self, uri: str) -> bytes: ...

    @abc.abstractmethod
    def read_from(self, uri: str, start: int) -> bytes:
        """The object's bytes from offset ``start`` to its end (for append-only logs)."""

    @abc.abstractmethod
    def write_bytes(self, uri: str, data: bytes) -> None:
        """Readers see the old content or the new, never a partial object."""

    @abc.abstractmethod
    def upload_file(self, local: str, uri: str) -> None: ...

    @abc.abstractmethod
    def download_file(self, uri: str, local: str) -> None:
        """Atomic on the local side: a temp file beside ``local``, then os.replace."""

    @abc.abstractmethod
    def list(self, uri: str) -> dict[str, ObjectInfo]:
        """Relative ``/``-name -> info for every object under the prefix (recursive).

        A prefix with nothing under it lists as empty; a missing bucket is a UserError.
        """

    @abc.abstractmethod
    def is_file(self, uri: str) -> bool: ...

    @abc.abstractmethod
    def exists(self, uri: str) -> bool:
        """An object named ``uri``, or anything under it; False for a missing bucket."""

    @abc.abstractmethod
    def delete(self, uri: str) -> None:
        """Delete one object; a missing one is not an error."""

    @abc.abstractmethod
    def delete_prefix(self, uri: str) -> None:
        """Delete everything under ``uri``; missing (bucket included) is not an error."""

    @abc.abstractmethod
    def check_writable_location(self, uri: str) -> None:
        """Fail early (UserError) when ``uri`` cannot be written, e.g. no such bucket."""

    # -- conditional writes (the run lease, run_lock.py); object stores only

    def read_versioned(self, uri: str) -> tuple[bytes, str] | None:
        """(bytes, version token) of one object, or None when it does not exist."""
        raise NotImplementedError(f"{type(self).__name__}: no conditional operations")

    def create_if_absent(self, uri: str, data: bytes) -> str | None:
        """Write ``uri`` only if no object has that name: its version token, or None when
        one exists. Stores without preconditions may ignore them: callers read back."""
        raise NotImplementedError(f"{type(self).__name__}: no conditional operations")

    def replace_if(self, uri: str, data: bytes, token: str) -> str | None:
        """Overwrite ``uri`` only if it is still at version ``token``: the new token, or
        None when it changed (or vanished) in between."""
        raise NotImplementedError(f"{type(self).__name__}: no conditional operations")
