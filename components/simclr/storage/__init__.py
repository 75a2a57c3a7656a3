"""One storage layer for every component: local paths, ``gs://`` and ``s3://``.

``from simclr import storage`` is the whole API; the package is split by concern:

- ``uri``: parsing, the supported schemes, and which store holds a URI;
- ``base``: the ``ObjectStore`` interface; ``local``, ``gcs``, ``s3``: one module per
  store (a new store is one module plus a line in ``uri.REMOTE_STORES``);
- ``files``: file and directory operations on any URI, dispatched to its store;
- ``publish``: ``atomic_dir`` (manifest/metrics published last);
- ``cache``: ``localize_dir``; ``mirror``: ``DirectoryMirror``; ``follow``: a local
  copy of an append-only remote directory (TensorBoard logs) that keeps up.

Transient errors (throttling, 5xx, connection resets, timeouts) are retried with
exponential backoff by each store; permanent ones (not found, missing bucket, denied,
bad credentials) fail at once with a one-line UserError naming the URI.
"""

from simclr.storage.cache import default_cache_root, localize_dir
from simclr.storage.files import (
    check_writable,
    copy,
    delete,
    delete_dir,
    download_dir,
    download_file,
    exists,
    list_files,
    makedirs,
    read_bytes,
    read_json,
    read_text,
    upload_dir,
    upload_file,
    write_bytes,
    write_json,
    write_text,
)
from simclr.storage.follow import LogFollower
from simclr.storage.mirror import DirectoryMirror
from simclr.storage.publish import DEFAULT_LAST, atomic_dir
from simclr.storage.uri import (
    GS_PREFIX,
    REMOTE_STORES,
    S3_PREFIX,
    SUPPORTED,
    is_remote,
    join,
    local_path,
    scheme,
)

__all__ = [
    "check_writable",
    "DEFAULT_LAST",
    "GS_PREFIX",
    "REMOTE_STORES",
    "S3_PREFIX",
    "SUPPORTED",
    "DirectoryMirror",
    "LogFollower",
    "atomic_dir",
    "copy",
    "default_cache_root",
    "delete",
    "delete_dir",
    "download_dir",
    "download_file",
    "exists",
    "is_remote",
    "join",
    "list_files",
    "local_path",
    "localize_dir",
    "makedirs",
    "read_bytes",
    "read_json",
    "read_text",
    "scheme",
    "upload_dir",
    "upload_file",
    "write_bytes",
    "write_json",
    "write_text",
]
