"""Files and directories at any location: each call goes to the store that holds its URI."""

from __future__ import annotations

import concurrent.futures
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

from simclr.errors import UserError
from simclr.storage.local import walk_files
from simclr.storage.uri import is_remote, join, local_path, store_for

PARALLEL_TRANSFERS = 8


def exists(uri: str) -> bool:
    """Whether a file exists, or (for a directory/prefix) anything is under it."""
    return store_for(uri).exists(uri)


def read_bytes(uri: str) -> bytes:
    return store_for(uri).read_bytes(uri)


def write_bytes(uri: str, data: bytes) -> None:
    """Atomic: readers see the old content or the new one, never a partial file."""
    store_for(uri).write_bytes(uri, data)


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

    A directory that does not exist lists as empty (as an object-store prefix does).
    """
    if not is_remote(uri):
        return walk_files(local_path(uri))
    return sorted(store_for(uri).list(uri))


def makedirs(uri: str) -> None:
    """Create a local directory; for a bucket URI check the bucket exists (fail early)."""
    store_for(uri).check_writable_location(uri)


def upload_file(local: str, uri: str) -> None:
    """Copy a local file to ``uri`` (an object store or another local path)."""
    if not os.path.isfile(local):
        raise UserError(
            f"{local}: not found" if not os.path.exists(local) else f"{local}: is not a file"
        )
    store_for(uri).upload_file(local, uri)


def download_file(uri: str, local: str) -> None:
    """Copy ``uri`` to a local file, atomically (temp file + os.replace)."""
    store_for(uri).download_file(uri, local)


def transfer_all(pairs: Iterable[tuple[str, str]], fn: Callable[[str, str], None]) -> None:
    """Run ``fn(src, dst)`` for every pair, a few at a time (I/O bound)."""
    pairs = list(pairs)
    if len(pairs) <= 1:
        for src, dst in pairs:
            fn(src, dst)
        return
    with concurrent.futures.ThreadPoolExecutor(PARALLEL_TRANSFERS) as pool:
        for future in [pool.submit(fn, src, dst) for src, dst in pairs]:
            future.result()


def ordered(rels: Iterable[str], last: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split relative paths into (the rest, the ``last`` ones in the given order)."""
    rels = list(rels)
    last = [name for name in last if name in rels]
    return [r for r in rels if r not in last], last


def upload_dir(local_dir: str, uri: str, *, last: Iterable[str] = ()) -> None:
    """Copy every file under ``local_dir`` to ``uri``; files named in ``last`` go last."""
    if not os.path.isdir(local_dir):
        raise UserError(f"{local_dir}: not a directory")
    rest, final = ordered(list_files(local_dir), last)
    transfer_all(((join(local_dir, r), join(uri, r)) for r in rest), upload_file)
    for rel in final:
        upload_file(join(local_dir, rel), join(uri, rel))


def download_dir(uri: str, local_dir: str) -> None:
    """Copy every file under ``uri`` into ``local_dir``."""
    os.makedirs(local_dir, exist_ok=True)
    rels = list_files(uri)
    transfer_all(((join(uri, r), os.path.join(local_dir, r)) for r in rels), download_file)


def _is_dir(uri: str) -> bool:
    if not is_remote(uri):
        return os.path.isdir(local_path(uri))
    return not store_for(uri).is_file(uri) and exists(uri)


def copy(src_uri: str, dst_uri: str) -> None:
    """Copy a file, or a whole directory, between any mix of local and object stores."""
    if _is_dir(src_uri):
        rels = list_files(src_uri)
        transfer_all(((join(src_uri, r), join(dst_uri, r)) for r in rels), copy)
        return
    if not is_remote(src_uri):
        upload_file(local_path(src_uri), dst_uri)  # local -> local or a store
    elif not is_remote(dst_uri):
        download_file(src_uri, local_path(dst_uri))
    else:
        with tempfile.TemporaryDirectory(prefix="simclr-copy-") as tmp:
            local = os.path.join(tmp, "blob")
            download_file(src_uri, local)
            upload_file(local, dst_uri)


def delete(uri: str) -> None:
    """Delete one file; a missing file is not an error."""
    store_for(uri).delete(uri)


def delete_dir(uri: str) -> None:
    """Delete a directory/prefix and everything under it; missing is not an error."""
    store_for(uri).delete_prefix(uri)


def check_writable(uri: str, what: str) -> None:
    """Writes and deletes a small probe file under `uri`; UserError naming `what` if that
    fails, so a read-only or mistyped location is found before any work is done."""
    probe = join(uri, f".simclr-write-probe-{os.getpid()}")
    created = [] if is_remote(uri) else _missing_dirs(local_path(uri))
    try:
        if (
            not is_remote(uri)
            and os.path.exists(local_path(uri))
            and not os.path.isdir(local_path(uri))
        ):
            raise OSError(f"{uri} is a file, not a directory")
        write_text(probe, "probe")
        delete(probe)
        _remove_empty_folders(created)
    except Exception as e:  # noqa: BLE001 - any failure means "cannot write there"
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        reason = reason.replace(f"{probe}: ", "")
        raise UserError(f"{what} {uri} is not writable: {reason}") from None


def _remove_empty_folders(folders: list[str]) -> None:
    """Removes the folders the probe made, deepest first, so a run that fails later
    leaves no trace. A folder another process has written into meanwhile (the workers
    of one cluster probe the same --output_dir at once) or removed is theirs: stop."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except FileNotFoundError:
            continue
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return
            raise


def _missing_dirs(path: str) -> list[str]:
    """The folders from `path` up that do not exist yet, deepest first."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        missing.append(path)
        path = os.path.dirname(path)
    return missing
