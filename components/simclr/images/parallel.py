"""Ordered, bounded parallel maps, and how many CPUs this process may really use.

`ordered_map` keeps at most `window` calls in flight and yields their results in input
order, pulling the next input only when a slot frees up: memory stays bounded whatever
the number of inputs (`Executor.map` would submit every input at once, and
`multiprocessing.Pool.imap` feeds its task queue from the whole input as fast as it can).
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

_In = TypeVar("_In")
_Out = TypeVar("_Out")

CGROUP_ROOT = "/sys/fs/cgroup"


def _cgroup_cpu_limit(root: str) -> float | None:
    """CPUs allowed by the cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`), or None."""
    try:
        with open(os.path.join(root, "cpu.max")) as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for v1 in ("cpu", "cpu,cpuacct"):
        try:
            with open(os.path.join(root, v1, "cpu.cfs_quota_us")) as f:
                quota_us = int(f.read())
            with open(os.path.join(root, v1, "cpu.cfs_period_us")) as f:
                period_us = int(f.read())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    return None


def available_cpus(cgroup_root: str = CGROUP_ROOT) -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota.

    A Kubernetes CPU limit is a cgroup quota: a pod limited to 4 CPUs on a 64-core node
    sees 64 in os.cpu_count() but gets 4 CPUs' worth of time, and 64 busy workers would
    only thrash. A fractional quota rounds up (1.5 -> 2).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    limit = _cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return max(1, cpus)


def ordered_map(
    submit: Callable[[_In], concurrent.futures.Future],
    items: Iterable[_In],
    window: int,
) -> Iterator[tuple[_In, Any]]:
    """(item, result of the future `submit(item)`) in input order, at most `window` in flight.

    Closing the generator (or an exception while consuming it) cancels what has not
    started.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    pending: deque[tuple[_In, concurrent.futures.Future]] = deque()
    try:
        for item in items:
            pending.append((item, submit(item)))
            if len(pending) >= window:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
    finally:
        for _, future in pending:
            future.cancel()


class InlineExecutor(concurrent.futures.Executor):
    """Runs each call at submit time in this thread (one worker: no processes to start)."""

    def submit(self, fn: Callable[..., _Out], /, *args: Any, **kwargs: Any):
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # delivered through the future, as a pool would
            future.set_exception(err)
        return future


def process_pool(workers: int) -> concurrent.futures.Executor:
    """`workers` fresh ("spawn") processes, or this process when workers == 1.

    Spawned, not forked: the parent may hold TensorFlow's and the storage clients'
    threads and locks, which a fork would copy in whatever state they were in.
    """
    if workers <= 1:
        return InlineExecutor()
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn")
    )
