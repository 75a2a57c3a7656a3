"""A local copy of a remote directory of append-only files that keeps up with it.

Made for TensorBoard event files, which TensorFlow 2.21 can no longer read from s3://
itself: the writer's mirror (``DirectoryMirror``) re-uploads a growing event file as a
whole object, and ``LogFollower`` appends only the new bytes to the local copy. It
never replaces a file TensorBoard already has open (that reader would keep reading the
old inode and miss every later event); new files arrive complete, renamed into place
from a staging directory beside the logs, so no half-written file is ever seen there.
"""

from __future__ import annotations

import logging
import os
import threading

from simclr.storage.files import download_file
from simclr.storage.uri import join, store_for

_log = logging.getLogger(__name__)


class LogFollower:
    """Keeps ``<work_dir>/logs`` up to date with ``uri``, every ``interval_s`` seconds."""

    def __init__(self, uri: str, work_dir: str, interval_s: float = 5.0) -> None:
        self.uri = uri
        self.interval_s = interval_s
        self.local_dir = os.path.join(work_dir, "logs")
        self._staging = os.path.join(work_dir, "incoming")
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> int:
        """Bring every file up to date; returns how many changed."""
        store = store_for(self.uri)
        changed = 0
        for rel, info in sorted(store.list(self.uri).items()):
            path = os.path.join(self.local_dir, rel)
            size = os.path.getsize(path) if os.path.isfile(path) else None
            if size == info.size:
                continue
            if size is None or size > info.size:  # new, or rewritten shorter: take it whole
                staged = os.path.join(self._staging, rel)
                download_file(join(self.uri, rel), staged)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.replace(staged, path)
            else:  # grown: append what is new
                tail = store.read_from(join(self.uri, rel), size)
                with open(path, "ab") as f:
                    f.write(tail)
            changed += 1
        return changed

    def _run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            try:
                self.sync()
            except Exception:  # keep following through hiccups
                _log.warning("following %s failed", self.uri, exc_info=True)

    def start(self) -> LogFollower:
        os.makedirs(self.local_dir, exist_ok=True)
        self.sync()  # the first one in the foreground: a wrong URI fails here, at once
        self._thread = threading.Thread(target=self._run, name=f"follow:{self.uri}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
