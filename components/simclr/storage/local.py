"""Local files (plain paths and ``file://``), with atomic writes (temp file, fsync, rename)."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import BinaryIO

from simclr.errors import UserError
from simclr.storage.base import ObjectInfo, ObjectStore, md5_b64_of_file
from simclr.storage.uri import local_path


@contextlib.contextmanager
def local_errors(path: str) -> Iterator[None]:
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


def atomic_local_write(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Write via ``write(fileobj)`` to a temp file beside ``path``, fsync, os.replace."""
    parent = os.path.dirname(os.path.abspath(path))
    with local_errors(path):
        fd, tmp = _temp_file_in(parent, prefix=f".{os.path.basename(path)}.tmp-")
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


def _temp_file_in(folder: str, prefix: str, attempts: int = 5) -> tuple[int, str]:
    """mkstemp in `folder`, made first; made again if it vanished in between. The workers
    of one cluster probe the same missing --output_dir at once, and each removes the
    folders its probe made: one may rmdir between another's mkdir and its mkstemp."""
    for _ in range(attempts - 1):
        with contextlib.suppress(FileNotFoundError):  # makedirs too: a parent may vanish
            os.makedirs(folder, exist_ok=True)
            return tempfile.mkstemp(prefix=prefix, dir=folder)
    os.makedirs(folder, exist_ok=True)
    return tempfile.mkstemp(prefix=prefix, dir=folder)


@functools.lru_cache(maxsize=1)
def _current_umask() -> int:
    # Read once: os.umask can only be read by setting it, which races with other threads.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def walk_files(root: str) -> list[str]:
    """Files under ``root``: recursive, relative ``/``-paths, sorted; [] if missing."""
    out = []
    for base, _dirs, files in os.walk(root):
        rel_base = os.path.relpath(base, root)
        for name in files:
            rel = name if rel_base == "." else os.path.join(rel_base, name)
            out.append(rel.replace(os.sep, "/"))
    return sorted(out)


class _LocalFileInfo(ObjectInfo):
    """ObjectInfo whose MD5 is computed only when asked for."""

    def __init__(self, path: str) -> None:
        object.__setattr__(self, "size", os.path.getsize(path))
        object.__setattr__(self, "_path", path)

    @functools.cached_property
    def md5_b64(self) -> str:  # type: ignore[override]
        return md5_b64_of_file(self._path)


class LocalStore(ObjectStore):
    def read_bytes(self, uri: str) -> bytes:
        with local_errors(uri), open(local_path(uri), "rb") as f:
            return f.read()

    def read_from(self, uri: str, start: int) -> bytes:
        with local_errors(uri), open(local_path(uri), "rb") as f:
            f.seek(start)
            return f.read()

    def write_bytes(self, uri: str, data: bytes) -> None:
        atomic_local_write(local_path(uri), lambda f: f.write(data))

    def upload_file(self, local: str, uri: str) -> None:
        self._copy(local, local_path(uri))

    def download_file(self, uri: str, local: str) -> None:
        self._copy(local_path(uri), local)

    @staticmethod
    def _copy(src: str, dst: str) -> None:
        if os.path.abspath(src) == os.path.abspath(dst):
            return
        with local_errors(src), open(src, "rb") as fsrc:
            atomic_local_write(dst, lambda f: shutil.copyfileobj(fsrc, f, 1 << 20))

    def list(self, uri: str) -> dict[str, ObjectInfo]:
        root = local_path(uri)
        return {rel: _LocalFileInfo(os.path.join(root, rel)) for rel in walk_files(root)}

    def is_file(self, uri: str) -> bool:
        return os.path.isfile(local_path(uri))

    def exists(self, uri: str) -> bool:
        return os.path.exists(local_path(uri))

    def delete(self, uri: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(local_path(uri))

    def delete_prefix(self, uri: str) -> None:
        shutil.rmtree(local_path(uri), ignore_errors=True)

    def check_writable_location(self, uri: str) -> None:
        with local_errors(uri):
            os.makedirs(local_path(uri), exist_ok=True)
