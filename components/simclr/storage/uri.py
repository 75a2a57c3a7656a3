"""URIs: which store a location belongs to, joining, and bucket/key splitting.

A location is a plain local path, ``file://PATH``, or ``SCHEME://bucket/key`` for a
scheme in ``REMOTE_STORES``. Anything else with ``://`` is refused: a typo such as
``s3a://`` must not silently become a local folder named ``s3a:``.
"""

from __future__ import annotations

import importlib
import os
import re
from typing import TYPE_CHECKING

from simclr.errors import UserError

if TYPE_CHECKING:
    from simclr.storage.base import ObjectStore

FILE_PREFIX = "file://"
GS_PREFIX = "gs://"
S3_PREFIX = "s3://"
# scheme -> "module:class" of its ObjectStore; imported on first use, so the GCS and
# S3 client libraries load only when a URI needs them. A new store is one more line.
REMOTE_STORES = {
    "gs": "simclr.storage.gcs:GcsStore",
    "s3": "simclr.storage.s3:S3Store",
}
SUPPORTED = ", ".join([*(f"{s}://" for s in REMOTE_STORES), "file://", "a local path"])
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme(uri: str) -> str:
    """``"gs"``, ``"s3"``, ... or ``""`` for a local path (``file://`` included).

    Raises a UserError naming the supported schemes for any other ``scheme://``.
    """
    match = _SCHEME.match(str(uri))
    if not match:
        return ""
    name = match.group(1)
    if name == "file":
        return ""
    if name not in REMOTE_STORES:
        raise UserError(f"{uri}: unsupported URI scheme '{name}://' (supported: {SUPPORTED})")
    return name


def is_remote(uri: str) -> bool:
    """True for an object-store URI (gs://, s3://); False for a local path."""
    return scheme(uri) != ""


def local_path(uri: str) -> str:
    """The path of a local location (``file://`` stripped)."""
    uri = str(uri)
    return uri[len(FILE_PREFIX) :] if uri.startswith(FILE_PREFIX) else uri


def join(uri: str, *parts: str) -> str:
    """Join path parts; for object stores always with ``/`` and without doubled slashes."""
    uri = str(uri)
    if not is_remote(uri):
        return os.path.join(uri, *[str(p) for p in parts])
    out = uri.rstrip("/")
    for part in parts:
        part = str(part).strip("/")
        if part:
            out += "/" + part
    return out


def split(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    rest = str(uri).split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise UserError(f"{uri}: no bucket name in URI")
    return bucket, key


def dir_prefix(key: str) -> str:
    """Object-name prefix for the "directory" ``key`` ('' for the bucket root)."""
    key = key.strip("/")
    return key + "/" if key else ""


_stores: dict[str, ObjectStore] = {}


def store_for(uri: str) -> ObjectStore:
    """The store that holds ``uri`` (one instance per scheme and process)."""
    name = scheme(uri)
    if name not in _stores:
        if name == "":
            from simclr.storage.local import LocalStore

            _stores[name] = LocalStore()
        else:
            module, _, cls = REMOTE_STORES[name].partition(":")
            _stores[name] = getattr(importlib.import_module(module), cls)()
    return _stores[name]
