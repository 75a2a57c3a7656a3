"""Publishing a directory so that readers never take a half-written one for output."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator

from simclr.storage import files
from simclr.storage.local import local_errors, walk_files
from simclr.storage.uri import is_remote, local_path

DEFAULT_LAST = ("manifest.json", "metrics.json")


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
        target = os.path.abspath(local_path(uri))
        parent = os.path.dirname(target)
        with local_errors(uri):
            os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tmp-", dir=parent)
    try:
        yield staging
        if is_remote(uri):
            files.upload_dir(staging, uri, last=last)
        else:
            _publish_local(staging, local_path(uri), last)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish_local(staging: str, path: str, last: tuple[str, ...]) -> None:
    """Move staged files into place one by one (same file system: os.replace)."""
    rest, final = files.ordered(walk_files(staging), last)
    with local_errors(path):
        os.makedirs(path, exist_ok=True)
        for rel in rest + final:
            dst = os.path.join(path, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.replace(os.path.join(staging, rel), dst)
