"""Keeping a remote copy of a local directory that is being written (TensorBoard logs,
checkpoints) up to date from a background thread."""

from __future__ import annotations

import logging
import os
import threading

from simclr.errors import UserError
from simclr.storage import files
from simclr.storage.cache import same_file
from simclr.storage.local import walk_files
from simclr.storage.uri import is_remote, join, store_for

_log = logging.getLogger(__name__)


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

    def _same_place(self) -> bool:
        return not is_remote(self.uri) and os.path.abspath(self.local_dir) == os.path.abspath(
            self.uri
        )

    def sync(self) -> int:
        """Upload new or changed files; returns how many were uploaded."""
        with self._lock:
            if not self._seeded:
                self._seed_from_remote()
            return self._sync_locked()

    def _seed_from_remote(self) -> None:
        if not self._same_place():
            remote = store_for(self.uri).list(self.uri)
            for rel in walk_files(self.local_dir):
                stat = self._stat(rel)
                if stat and rel in remote and same_file(self._path(rel), remote[rel]):
                    self._uploaded[rel] = stat
        self._seeded = True

    def _path(self, rel: str) -> str:
        return os.path.join(self.local_dir, rel)

    def _stat(self, rel: str) -> tuple[int, int] | None:
        try:
            st = os.stat(self._path(rel))
        except FileNotFoundError:
            return None
        return (st.st_size, st.st_mtime_ns)

    def _sync_locked(self) -> int:
        if self._same_place():
            return 0
        count = 0
        current = walk_files(self.local_dir)
        for rel in current:
            stat = self._stat(rel)  # taken before the upload: a later change re-uploads
            if stat is None or self._uploaded.get(rel) == stat:
                continue
            try:
                files.upload_file(self._path(rel), join(self.uri, rel))
            except UserError:
                if os.path.exists(self._path(rel)):
                    raise
                continue  # removed while we looked (e.g. a writer's temp file)
            self._uploaded[rel] = stat
            count += 1
        if self.delete_removed:
            for rel in set(self._uploaded) - set(current):
                files.delete(join(self.uri, rel))
                del self._uploaded[rel]
        return count

    def _run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            try:
                self.sync()
            except UserError as e:  # one line already (e.g. a dead store); keep trying
                _log.warning("mirroring %s to %s failed: %s", self.local_dir, self.uri, e)
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
        except UserError as e:
            _log.warning("final mirror sync to %s failed: %s", self.uri, e)
        except Exception:
            _log.warning("final mirror sync to %s failed", self.uri, exc_info=True)
