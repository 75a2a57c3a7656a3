"""One storage layer for every component: local paths and ``gs://bucket/prefix``.

gs:// goes through google-cloud-storage, never TensorFlow's own gs:// file system,
because only the former can be pointed at an emulator (``STORAGE_EMULATOR_HOST``).
Transient errors (429/5xx, connection resets, timeouts) are retried with exponential
backoff; permanent ones (404, 403) fail at once with a UserError naming the URI.
Local writes are atomic (temp file in the same directory, fsync, os.replace).
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from simclr.errors import UserError

_log = logging.getLogger(__name__)

GS_PREFIX = "gs://"
DEFAULT_LAST = ("manifest.json", "metrics.json")
_PARALLEL_TRANSFERS = 8


# --------------------------------------------------------------------------- basics


def is_remote(uri: str) -> bool:
    """True for ``gs://`` URIs (the only remote scheme we support)."""
    return str(uri).startswith(GS_PREFIX)


def join(uri: str, *parts: str) -> str:
    """Join path parts; for gs:// always with ``/`` and without doubled slashes."""
    uri = str(uri)
    if not is_remote(uri):
        return os.path.join(uri, *[str(p) for p in parts])
    out = uri.rstrip("/")
    for part in parts:
        part = str(part).strip("/")
        if part:
            out += "/" + part
    return out


def _split(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> ``("bucket", "a/b")``."""
    bucket, _, key = uri[len(GS_PREFIX) :].partition("/")
    if not bucket:
        raise UserError(f"{uri}: no bucket name in URI")
    return bucket, key


def _dir_prefix(key: str) -> str:
    """Object-name prefix for the "directory" ``key`` ('' for the bucket root)."""
    key = key.strip("/")
    return key + "/" if key else ""


# --------------------------------------------------------------------------- client


def _retry():
    """Storage's own transient-error predicate, with a quicker first backoff.

    Every call we make passes this explicitly. For uploads that is a deliberate
    choice: the library only retries uploads carrying ``if_generation_match``, but our
    uploads are whole-object overwrites with deterministic content (last writer wins),
    so repeating one after an ambiguous failure cannot corrupt anything.
    """
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_delay(initial=0.5, maximum=16.0, multiplier=2.0).with_timeout(120.0)


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
    bucket, key = _split(uri)
    if not key:
        raise UserError(f"{uri}: URI names a bucket, not an object")
    return _client().bucket(bucket).blob(key)


def _bucket_exists(bucket: str) -> bool | None:
    """Whether the bucket exists; None when we may not ask (403)."""
    from google.api_core import exceptions as gexc

    try:
        return _client().bucket(bucket).exists(retry=_retry())
    except gexc.Forbidden:
        return None


@contextlib.contextmanager
def _gcs_errors(uri: str) -> Iterator[None]:
    """Turn permanent google-cloud-storage errors into one-line UserErrors."""
    from google.api_core import exceptions as gexc

    try:
        yield
    except gexc.NotFound as e:
        bucket, _ = _split(uri)
        if _bucket_exists(bucket) is False:
            raise UserError(f"{uri}: bucket '{bucket}' does not exist") from e
        raise UserError(f"{uri}: not found") from e
    except (gexc.Forbidden, gexc.Unauthorized) as e:
        raise UserError(f"{uri}: permission denied") from e


@contextlib.contextmanager
def _local_errors(path: str) -> Iterator[None]:
    """Turn OS errors about missing/forbidden local paths into UserErrors."""
    try:
        yield
    except FileNotFoundError as e:
        raise UserError(f"{path}: not found") from e
    except IsADirectoryError as e:
        raise UserError(f"{path}: is a directory, expected a file") from e
    except NotADirectoryError as e:
        raise UserError(f"{path}: a parent of this path is not a directory") from e
    except PermissionError as e:
        raise UserError(f"{path}: permission denied") from e


# --------------------------------------------------------------------------- files


def exists(uri: str) -> bool:
    """Whether a file exists, or (for a directory/prefix) anything is under it."""
    if not is_remote(uri):
        return os.path.exists(uri)
    from google.api_core import exceptions as gexc

    bucket, key = _split(uri)
    try:
        if key and _client().bucket(bucket).blob(key).exists(retry=_retry()):
            return True
        blobs = _client().list_blobs(bucket, prefix=_dir_prefix(key), max_results=1, retry=_retry())
        return any(True for _ in blobs)
    except gexc.NotFound:
        return False


def _atomic_local_write(path: str, write) -> None:
    """Write via ``write(fileobj)`` to a temp file beside ``path``, fsync, os.replace."""
    parent = os.path.dirname(os.path.abspath(path))
    with _local_errors(path):
        os.makedirs(parent, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            # mkstemp creates 0600; give the file the mode a plain open() would have.
            os.chmod(tmp, 0o666 & ~_current_umask())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            raise


@functools.lru_cache(maxsize=1)
def _current_umask() -> int:
    # Read once: os.umask can only be read by setting it, which races with other threads.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_bytes(uri: str) -> bytes:
    if not is_remote(uri):
        with _local_errors(uri), open(uri, "rb") as f:
            return f.read()
    with _gcs_errors(uri):
        return _blob(uri).download_as_bytes(retry=_retry())


def write_bytes(uri: str, data: bytes) -> None:
    """Atomic: readers see the old content or the new one, never a partial file."""
    if not is_remote(uri):
        _atomic_local_write(uri, lambda f: f.write(data))
        return
    with _gcs_errors(uri):
        _blob(uri).upload_from_string(bytes(data), retry=_retry())


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def read_json(uri: str) -> Any:
    try:
        return json.loads(read_text(uri))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{uri}: not valid JSON ({e})") from e


def write_json(uri: str, obj: Any) -> None:
    """Stable, diff-friendly JSON: indent=2, sorted keys, trailing newline."""
    write_text(uri, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def list_files(uri: str) -> list[str]:
    """Files under a directory/prefix: recursive, relative ``/``-paths, sorted.

    A directory that does not exist lists as empty (as a gs:// prefix does).
    """
    if not is_remote(uri):
        out = []
        for root, _dirs, files in os.walk(uri):
            rel_root = os.path.relpath(root, uri)
            for name in files:
                rel = name if rel_root == "." else os.path.join(rel_root, name)
                out.append(rel.replace(os.sep, "/"))
        return sorted(out)
    return sorted(_list_blobs(uri))


def _list_blobs(uri: str) -> dict[str, Any]:
    """Relative name -> blob for every object under the prefix (placeholders skipped)."""
    bucket, key = _split(uri)
    prefix = _dir_prefix(key)
    with _gcs_errors(uri):
        blobs = list(_client().list_blobs(bucket, prefix=prefix, retry=_retry()))
    return {b.name[len(prefix) :]: b for b in blobs if not b.name.endswith("/")}


def makedirs(uri: str) -> None:
    """Create a local directory; for gs:// check the bucket exists (fail early)."""
    if not is_remote(uri):
        with _local_errors(uri):
            os.makedirs(uri, exist_ok=True)
        return
    bucket, _ = _split(uri)
    if _bucket_exists(bucket) is False:
        raise UserError(f"{uri}: bucket '{bucket}' does not exist")


def upload_file(local: str, uri: str) -> None:
    """Copy a local file to ``uri`` (gs:// or another local path)."""
    if not os.path.isfile(local):
        raise UserError(
            f"{local}: not found" if not os.path.exists(local) else f"{local}: is not a file"
        )
    if not is_remote(uri):
        _copy_local(local, uri)
        return
    with _gcs_errors(uri), _local_errors(local):
        _blob(uri).upload_from_filename(local, retry=_retry())


def download_file(uri: str, local: str) -> None:
    """Copy ``uri`` to a local file, atomically (temp file + os.replace)."""
    if not is_remote(uri):
        _copy_local(uri, local)
        return
    blob = _blob(uri)
    with _gcs_errors(uri):
        _atomic_local_write(local, lambda f: blob.download_to_file(f, retry=_retry()))


def _copy_local(src: str, dst: str) -> None:
    if os.path.abspath(src) == os.path.abspath(dst):
        return
    with _local_errors(src), open(src, "rb") as fsrc:
        _atomic_local_write(dst, lambda f: shutil.copyfileobj(fsrc, f, 1 << 20))


def _transfer_all(pairs: Iterable[tuple[str, str]], fn) -> None:
    """Run ``fn(src, dst)`` for every pair, a few at a time (I/O bound)."""
    pairs = list(pairs)
    if len(pairs) <= 1:
        for src, dst in pairs:
            fn(src, dst)
        return
    with concurrent.futures.ThreadPoolExecutor(_PARALLEL_TRANSFERS) as pool:
        for future in [pool.submit(fn, src, dst) for src, dst in pairs]:
            future.result()


def _ordered(rels: Iterable[str], last: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split relative paths into (the rest, the ``last`` ones in the given order)."""
    rels = list(rels)
    last = [name for name in last if name in rels]
    return [r for r in rels if r not in last], last


def upload_dir(local_dir: str, uri: str, *, last: Iterable[str] = ()) -> None:
    """Copy every file under ``local_dir`` to ``uri``; files named in ``last`` go last."""
    if not os.path.isdir(local_dir):
        raise UserError(f"{local_dir}: not a directory")
    rest, final = _ordered(list_files(local_dir), last)
    _transfer_all(((join(local_dir, r), join(uri, r)) for r in rest), upload_file)
    for rel in final:
        upload_file(join(local_dir, rel), join(uri, rel))


def download_dir(uri: str, local_dir: str) -> None:
    """Copy every file under ``uri`` into ``local_dir``."""
    os.makedirs(local_dir, exist_ok=True)
    rels = list_files(uri)
    _transfer_all(((join(uri, r), os.path.join(local_dir, r)) for r in rels), download_file)


def _is_dir(uri: str) -> bool:
    if not is_remote(uri):
        return os.path.isdir(uri)
    _, key = _split(uri)
    return not (key and _blob(uri).exists(retry=_retry())) and exists(uri)


def copy(src_uri: str, dst_uri: str) -> None:
    """Copy a file, or a whole directory, between any mix of local and gs://."""
    if _is_dir(src_uri):
        rels = list_files(src_uri)
        _transfer_all(((join(src_uri, r), join(dst_uri, r)) for r in rels), copy)
        return
    if not is_remote(src_uri):
        upload_file(src_uri, dst_uri)  # local -> local or gs://
    elif not is_remote(dst_uri):
        download_file(src_uri, dst_uri)
    else:
        with tempfile.TemporaryDirectory(prefix="simclr-copy-") as tmp:
            local = os.path.join(tmp, "blob")
            download_file(src_uri, local)
            upload_file(local, dst_uri)


def delete(uri: str) -> None:
    """Delete one file; a missing file is not an error."""
    if not is_remote(uri):
        with contextlib.suppress(FileNotFoundError):
            os.remove(uri)
        return
    from google.api_core import exceptions as gexc

    with contextlib.suppress(gexc.NotFound), _gcs_errors_permission_only(uri):
        _blob(uri).delete(retry=_retry())


@contextlib.contextmanager
def _gcs_errors_permission_only(uri: str) -> Iterator[None]:
    from google.api_core import exceptions as gexc

    try:
        yield
    except (gexc.Forbidden, gexc.Unauthorized) as e:
        raise UserError(f"{uri}: permission denied") from e


def delete_dir(uri: str) -> None:
    """Delete a directory/prefix and everything under it; missing is not an error."""
    if not is_remote(uri):
        shutil.rmtree(uri, ignore_errors=True)
        return
    from google.api_core import exceptions as gexc

    try:
        blobs = _list_blobs(uri)
    except UserError:
        bucket, _ = _split(uri)
        if _bucket_exists(bucket) is False:
            return
        raise
    with contextlib.suppress(gexc.NotFound), _gcs_errors_permission_only(uri):
        for blob in blobs.values():
            with contextlib.suppress(gexc.NotFound):
                blob.delete(retry=_retry())


# --------------------------------------------------------------------------- localize


def default_cache_root() -> str:
    return os.environ.get("SIMCLR_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "simclr-kfp"
    )


def _md5_b64(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode("ascii")


def _same_file(path: str, size: int | None, md5_b64: str | None) -> bool:
    """Whether a local file matches an object's size and (when known) md5."""
    if not os.path.isfile(path) or os.path.getsize(path) != size:
        return False
    return md5_b64 is None or _md5_b64(path) == md5_b64


def localize_dir(uri: str, cache_root: str | None = None) -> str:
    """A local directory holding the files under ``uri`` (``uri`` itself if local).

    gs:// is downloaded into ``<cache_root>/<hash of uri>-<basename>``; files already
    there with the same size and md5 are kept, files no longer in the bucket removed.
    """
    if not is_remote(uri):
        return uri
    uri = uri.rstrip("/")
    root = cache_root or default_cache_root()
    digest = hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16]
    name = uri.rsplit("/", 1)[-1] if _split(uri)[1] else _split(uri)[0]
    local_dir = os.path.join(root, f"{digest}-{name}")
    blobs = _list_blobs(uri)
    os.makedirs(local_dir, exist_ok=True)
    for rel in set(list_files(local_dir)) - set(blobs):
        os.remove(os.path.join(local_dir, rel))
    todo = [
        (join(uri, rel), os.path.join(local_dir, rel))
        for rel, blob in blobs.items()
        if not _same_file(os.path.join(local_dir, rel), blob.size, blob.md5_hash)
    ]
    _transfer_all(todo, download_file)
    return local_dir


# --------------------------------------------------------------------------- atomic_dir


@contextlib.contextmanager
def atomic_dir(uri: str, last: Iterable[str] = DEFAULT_LAST) -> Iterator[str]:
    """Yield a local staging directory; publish its files to ``uri`` on success.

    The files named in ``last`` (e.g. the manifest) are published after all others,
    so a reader that finds them can trust the rest is there. On an exception nothing
    is published and the staging directory is removed.
    """
    last = tuple(last)
    if is_remote(uri):
        staging = tempfile.mkdtemp(prefix="simclr-stage-")
    else:
        target = os.path.abspath(uri)
        parent = os.path.dirname(target)
        with _local_errors(uri):
            os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tmp-", dir=parent)
    try:
        yield staging
        if is_remote(uri):
            upload_dir(staging, uri, last=last)
        else:
            _publish_local(staging, uri, last)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish_local(staging: str, uri: str, last: tuple[str, ...]) -> None:
    """Move staged files into place one by one (same file system: os.replace)."""
    rest, final = _ordered(list_files(staging), last)
    with _local_errors(uri):
        os.makedirs(uri, exist_ok=True)
        for rel in rest + final:
            dst = os.path.join(uri, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.replace(os.path.join(staging, rel), dst)


# --------------------------------------------------------------------------- mirror


class DirectoryMirror:
    """Keeps ``uri`` up to date with a local directory that is being written.

    ``sync()`` uploads files that are new or whose size/mtime changed since their last
    upload; ``start()`` runs it every ``interval_s`` in a daemon thread and ``stop()``
    (or leaving the ``with`` block) does a final sync. On the first sync, files
    already at ``uri`` with the same size and md5 count as uploaded (e.g. after a
    restore). With ``delete_removed=True`` files deleted locally are deleted remotely
    too (e.g. checkpoints rotated out).
    """

    def __init__(
        self, local_dir: str, uri: str, interval_s: float = 30, *, delete_removed: bool = False
    ) -> None:
        self.local_dir = local_dir
        self.uri = uri
        self.interval_s = interval_s
        self.delete_removed = delete_removed
        self._uploaded: dict[str, tuple[int, int]] = {}  # rel -> (size, mtime_ns)
        self._seeded = False
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> int:
        """Upload new or changed files; returns how many were uploaded."""
        with self._lock:
            if not self._seeded:
                self._seed_from_remote()
            return self._sync_locked()

    def _seed_from_remote(self) -> None:
        if os.path.abspath(self.local_dir) != os.path.abspath(self.uri) or is_remote(self.uri):
            remote = self._remote_index()
            for rel in list_files(self.local_dir):
                stat = self._stat(rel)
                if (
                    stat
                    and rel in remote
                    and _same_file(os.path.join(self.local_dir, rel), *remote[rel])
                ):
                    self._uploaded[rel] = stat
        self._seeded = True

    def _remote_index(self) -> dict[str, tuple[int | None, str | None]]:
        if is_remote(self.uri):
            return {r: (b.size, b.md5_hash) for r, b in _list_blobs(self.uri).items()}
        out = {}
        for rel in list_files(self.uri):
            path = os.path.join(self.uri, rel)
            out[rel] = (os.path.getsize(path), _md5_b64(path))
        return out

    def _stat(self, rel: str) -> tuple[int, int] | None:
        try:
            st = os.stat(os.path.join(self.local_dir, rel))
        except FileNotFoundError:
            return None
        return (st.st_size, st.st_mtime_ns)

    def _sync_locked(self) -> int:
        if os.path.abspath(self.local_dir) == os.path.abspath(self.uri):
            return 0
        count = 0
        current = list_files(self.local_dir)
        for rel in current:
            stat = self._stat(rel)  # taken before the upload: a later change re-uploads
            if stat is None or self._uploaded.get(rel) == stat:
                continue
            try:
                upload_file(os.path.join(self.local_dir, rel), join(self.uri, rel))
            except UserError:
                if os.path.exists(os.path.join(self.local_dir, rel)):
                    raise
                continue  # removed while we looked (e.g. a writer's temp file)
            self._uploaded[rel] = stat
            count += 1
        if self.delete_removed:
            for rel in set(self._uploaded) - set(current):
                delete(join(self.uri, rel))
                del self._uploaded[rel]
        return count

    def _run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            try:
                self.sync()
            except Exception:  # keep mirroring through hiccups; stop() reports errors
                _log.warning("mirroring %s to %s failed", self.local_dir, self.uri, exc_info=True)

    def start(self) -> DirectoryMirror:
        if self._thread is None:
            self._stop_event.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"mirror:{self.uri}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> int:
        """Stop the thread and do a final sync; returns what that sync uploaded."""
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return self.sync()

    def __enter__(self) -> DirectoryMirror:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.stop()
            return
        try:  # still save what we can, without hiding the original error
            self.stop()
        except Exception:
            _log.warning("final mirror sync to %s failed", self.uri, exc_info=True)
