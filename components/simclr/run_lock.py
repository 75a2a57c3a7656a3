"""A run directory belongs to one run: an exclusive lock on pretrain's --output_dir.

A second pretrain process on the same directory (outside a multi-worker run) is refused
before any work with one line, ``DIR is in use by <owner> (lease until ...)``, exit 2.

- **Local directories**: ``DIR/.lock``, held with ``flock(LOCK_EX | LOCK_NB)`` for the
  life of the process and holding the owner (pid, host, start). The kernel drops the
  lock when its process dies, however it dies, so a stale lock (a dead owner) never
  blocks a new run and needs no pid checks. A filesystem that cannot flock (ENOLCK,
  EOPNOTSUPP: some NFS or FUSE mounts) gets a warning and no lock.
- **gs:// and s3://**: a lease object ``DIR/.lock.json`` with the owner, host, created
  and expiry, written with a conditional create (GCS ``ifGenerationMatch=0``, S3
  ``If-None-Match: *``) and renewed every TTL/4 by a background thread with a
  conditional replace of the owner's own version. A lease past its expiry (its owner
  died without releasing it) is taken over with a conditional replace of that version.
  After every write the lease is read back, so a store that ignores preconditions (the
  GCS emulator) still refuses a second writer that came after the first.

KFP retries: a retry is a new pod (new host, new pid), so identity does not survive it;
expiry does the work. A clean end (success, error, SIGTERM's exit 143) deletes the
lease. A hard kill (SIGKILL, OOM, node loss) leaves it to expire within the TTL
(``SIMCLR_LEASE_SECONDS``, default 120 s). A live owner renews every TTL/4, so its lease
always has more than half its TTL left; a lease with less than that has missed
renewals, so a newcomer waits (at most TTL/2) for it to be renewed (then it is refused)
or to expire (then it takes over). A retry after the pipeline's 60 s backoff therefore
resumes the run instead of failing on its predecessor's lease. Expiry compares wall
clocks of different hosts: they must agree to well within the TTL (NTP).

Multi-worker runs: only the chief takes the lease; the workers are the same run.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from simclr import cluster, storage
from simclr.errors import UserError
from simclr.storage.local import local_errors
from simclr.storage.uri import store_for

LOCAL_NAME = ".lock"
LEASE_NAME = ".lock.json"
TTL_ENV = "SIMCLR_LEASE_SECONDS"
DEFAULT_TTL_S = 120.0
_log = logging.getLogger(__name__)


def lease_ttl(env: dict[str, str] | None = None) -> float:
    raw = (os.environ if env is None else env).get(TTL_ENV, "").strip()
    if not raw:
        return DEFAULT_TTL_S
    try:
        ttl = float(raw)
    except ValueError:
        ttl = -1.0
    if not ttl >= 1.0 or ttl == float("inf"):
        raise UserError(f"{TTL_ENV}={raw!r}: expected a number of seconds >= 1")
    return ttl


def is_chief_task(strategy: str, env: dict[str, str] | None = None) -> bool:
    """Whether this process speaks for the run (before TensorFlow: from TF_CONFIG).

    In a multi-worker run (--strategy=multi_worker, or auto with more than one task in
    TF_CONFIG) the chief by `cluster.is_chief`; any other strategy makes every process
    its own run.
    """
    multi = strategy == "multi_worker" or (strategy == "auto" and cluster.training_tasks(env) > 1)
    return not multi or cluster.is_chief(env)


def _iso(unix: float) -> str:
    return (
        datetime.datetime.fromtimestamp(unix, datetime.timezone.utc)
        .replace(microsecond=0)
        .isoformat()
        .replace("+00:00", "Z")
    )


def _describe(owner: dict[str, Any]) -> str:
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"


class RunLock:
    """Held between `acquire()` and `release()`; `check()` raises once it is lost."""

    def __init__(
        self,
        run_dir: str,
        *,
        ttl: float | None = None,
        log: Callable[[str], None] = _log.warning,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.run_dir = run_dir
        self.ttl = lease_ttl() if ttl is None else ttl
        self.log, self.clock = log, clock
        self.owner = {
            "owner": f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "created": _iso(clock()),
        }
        self.remote = storage.is_remote(run_dir)
        self._fd: int | None = None
        self._token: str | None = None
        self._valid_until = 0.0  # time.monotonic() by which the lease must be renewed
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- public

    def acquire(self) -> None:
        if self.remote:
            self._acquire_lease()
            self._thread = threading.Thread(target=self._renew_loop, name="run-lease", daemon=True)
            self._thread.start()
        else:
            self._acquire_local()

    def check(self) -> None:
        """Raises UserError if the lease was lost (not renewed in time, or taken over)."""
        if not self.remote or self._token is None:
            return
        if self._lost is None and time.monotonic() > self._valid_until:
            self._lost = "it was not renewed in time"
        if self._lost is not None:
            raise UserError(
                f"{self.run_dir}: this run lost its lease ({self._lost}); stopping before "
                "writing anything more"
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.remote:
            self._release_lease()
        elif self._fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._local_path)  # while still locked: see _acquire_local
            os.close(self._fd)
            self._fd = None

    # -- local: flock

    @property
    def _local_path(self) -> str:
        return os.path.join(storage.local_path(self.run_dir), LOCAL_NAME)

    def _acquire_local(self) -> None:
        import fcntl

        path = self._local_path
        while True:
            with local_errors(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise UserError(self._in_use_local(path)) from None
                self.log(f"{self.run_dir}: no run lock: this filesystem cannot flock ({e})")
                return
            # The holder deletes the file at release while still holding it; one who
            # opened it just before got a lock on an unlinked file: try the new one.
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(self.owner) + "\n").encode(), 0)
        self._fd = fd

    def _in_use_local(self, path: str) -> str:
        try:
            with open(path, encoding="utf-8") as f:
                owner = json.loads(f.read() or "{}")
        except (OSError, ValueError):
            owner = {}
        since = f"locked since {owner['created']}, " if owner.get("created") else ""
        return (
            f"{self.run_dir} is in use by {_describe(owner)} ({since}until that process "
            "exits): wait for it to end or use another --output_dir"
        )

    # -- object stores: a lease object

    @property
    def _lease_uri(self) -> str:
        return storage.join(self.run_dir, LEASE_NAME)

    def _lease_bytes(self, now: float) -> bytes:
        lease = {**self.owner, "expires": _iso(now + self.ttl), "expires_unix": now + self.ttl}
        return (json.dumps(lease, sort_keys=True) + "\n").encode()

    def _read(self) -> tuple[dict[str, Any], str] | None:
        found = store_for(self._lease_uri).read_versioned(self._lease_uri)
        if found is None:
            return None
        data, token = found
        try:
            lease = json.loads(data.decode("utf-8"))
            if not isinstance(lease, dict):
                raise ValueError
        except ValueError:
            lease = {}  # unreadable: as good as expired
        return lease, token

    def _acquire_lease(self) -> None:
        store = store_for(self._lease_uri)
        waited_for: str | None = None
        for _ in range(100):  # each round a write lost a race or the lease moved on
            started = time.monotonic()
            current = self._read()
            if current is None:
                token = store.create_if_absent(self._lease_uri, self._lease_bytes(self.clock()))
            else:
                lease, token_now = current
                if lease.get("owner") == self.owner["owner"]:
                    token = token_now  # our own create, answered ambiguously and retried
                else:
                    left = float(lease.get("expires_unix", 0)) - self.clock()
                    if left > 0:
                        if left > self.ttl / 2 or waited_for == token_now:
                            raise UserError(self._in_use_remote(lease))
                        # A live owner renews every ttl/4: this one has missed renewals.
                        waited_for = token_now
                        self.log(
                            f"{self.run_dir}: lease of {_describe(lease)} not renewed; "
                            f"waiting {left:.0f} s for it to expire"
                        )
                        time.sleep(left + 0.5)
                        continue
                    token = store.replace_if(
                        self._lease_uri, self._lease_bytes(self.clock()), token_now
                    )
                    if token is not None:
                        self.log(
                            f"{self.run_dir}: took over the expired lease of {_describe(lease)}"
                        )
            if token is not None and self._confirm(token):
                self._token = token
                self._valid_until = started + self.ttl
                return
        raise UserError(f"{self.run_dir}: could not take the run lease (too much contention)")

    def _confirm(self, token: str) -> bool:
        """Read back: the lease is ours (a store that ignores preconditions lets a racing
        writer overwrite it; the later writer wins and the earlier one backs off)."""
        current = self._read()
        return current is not None and current[0].get("owner") == self.owner["owner"]

    def _in_use_remote(self, lease: dict[str, Any]) -> str:
        return (
            f"{self.run_dir} is in use by {_describe(lease)} (lease until "
            f"{lease.get('expires', '?')}): wait for it to end or use another --output_dir"
        )

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self._renew()
            except UserError as e:  # the store is unreachable: try again next tick
                self.log(f"{self.run_dir}: could not renew the run lease: {e}")
            if self._lost is not None:
                self.log(f"{self.run_dir}: run lease lost: {self._lost}")
                return

    def _renew(self) -> None:
        started = time.monotonic()
        assert self._token is not None
        token = store_for(self._lease_uri).replace_if(
            self._lease_uri, self._lease_bytes(self.clock()), self._token
        )
        if token is None:
            current = self._read()
            if current is None or current[0].get("owner") != self.owner["owner"]:
                who = "deleted" if current is None else f"taken by {_describe(current[0])}"
                self._lost = f"the lease was {who}"
                return
            token = current[1]
        self._token, self._valid_until = token, started + self.ttl

    def _release_lease(self) -> None:
        if self._token is None:
            return
        self._token = None
        try:
            current = self._read()
            if current is not None and current[0].get("owner") == self.owner["owner"]:
                storage.delete(self._lease_uri)
        except UserError as e:  # it expires by itself
            self.log(f"{self.run_dir}: could not release the run lease: {e}")


@contextlib.contextmanager
def hold(run_dir: str, *, enabled: bool = True, **kwargs: Any) -> Iterator[RunLock | None]:
    """The run lock for the duration of the block (None when not enabled: a worker)."""
    if not enabled:
        yield None
        return
    lock = RunLock(run_dir, **kwargs)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()
