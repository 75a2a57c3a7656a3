"""A local copy of a remote directory, kept in sync by size and MD5 (``localize_dir``)."""

from __future__ import annotations

import hashlib
import os

from simclr.storage.base import ObjectInfo, md5_b64_of_file
from simclr.storage.files import download_file, transfer_all
from simclr.storage.local import walk_files
from simclr.storage.uri import is_remote, join, local_path, split, store_for


def default_cache_root() -> str:
    return os.environ.get("SIMCLR_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "simclr-kfp"
    )


def same_file(path: str, info: ObjectInfo) -> bool:
    """Whether a local file matches an object's size and (when known) MD5."""
    if not os.path.isfile(path) or os.path.getsize(path) != info.size:
        return False
    return info.md5_b64 is None or md5_b64_of_file(path) == info.md5_b64


def localize_dir(uri: str, cache_root: str | None = None) -> str:
    """A local directory holding the files under ``uri`` (``uri`` itself if local).

    A remote ``uri`` is downloaded into ``<cache_root>/<hash of uri>-<basename>``; files
    already there with the same size and MD5 are kept, files no longer remote removed.
    """
    if not is_remote(uri):
        return local_path(uri)
    uri = uri.rstrip("/")
    root = cache_root or default_cache_root()
    digest = hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16]
    bucket, key = split(uri)
    name = key.rsplit("/", 1)[-1] if key else bucket
    local_dir = os.path.join(root, f"{digest}-{name}")
    remote = store_for(uri).list(uri)
    os.makedirs(local_dir, exist_ok=True)
    for rel in set(walk_files(local_dir)) - set(remote):
        os.remove(os.path.join(local_dir, rel))
    todo = [
        (join(uri, rel), os.path.join(local_dir, rel))
        for rel, info in remote.items()
        if not same_file(os.path.join(local_dir, rel), info)
    ]
    transfer_all(todo, download_file)
    return local_dir
