"""How long one object-store operation may take before a dead store is reported.

One knob, the environment variable ``SIMCLR_STORE_TIMEOUT`` (seconds, default 60): the
budget of a single store operation, its retries included. An endpoint that refuses
connections, cannot be reached, or accepts connections and never answers fails that
operation within the budget with one line naming the URI, and the task exits 2.
Transient errors (throttling, 5xx, resets) are retried until the budget runs out.

An environment variable, not a flag: every task (and the pipeline's components, through
the pod's environment) reads it the same way, as the stores' own settings
(``AWS_ENDPOINT_URL``, ``STORAGE_EMULATOR_HOST``) are read.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from simclr.errors import UserError

ENV = "SIMCLR_STORE_TIMEOUT"
DEFAULT_S = 60.0
MAX_CONNECT_S = 10.0


@dataclass(frozen=True)
class Budget:
    """The per-operation budget and the per-attempt socket timeouts derived from it."""

    total: float  # one operation, retries included
    connect: float  # one TCP connect
    read: float  # one wait for bytes (between bytes, not the whole transfer)

    @property
    def describe(self) -> str:
        return f"{self.total:g} s ({ENV})"


def budget(env: dict[str, str] | None = None) -> Budget:
    """The budget from ``SIMCLR_STORE_TIMEOUT``; a bad value is a one-line UserError."""
    raw = (os.environ if env is None else env).get(ENV, "").strip()
    total = DEFAULT_S
    if raw:
        try:
            total = float(raw)
        except ValueError:
            total = math.nan
        if not (math.isfinite(total) and total > 0):
            raise UserError(f"{ENV}={raw!r}: expected a positive number of seconds")
    # A third of the budget per wait leaves room for at least one retry of a silent
    # server within the budget (see the stores' deadline checks).
    read = total / 3
    return Budget(total=total, connect=min(MAX_CONNECT_S, read), read=read)


def unreachable_message(uri: str, store: str, err: BaseException) -> str:
    """``URI: cannot reach the S3 endpoint within 60 s (SIMCLR_STORE_TIMEOUT): <why>``."""
    return (
        f"{uri}: cannot reach the {store} endpoint within {budget().describe}: {short_reason(err)}"
    )


def short_reason(err: BaseException) -> str:
    """The innermost cause's class and first line, cut short (urllib3's are very long)."""
    seen = set()
    while True:
        inner = getattr(err, "last_exc", None) or err.__cause__ or err.__context__
        if inner is None or id(inner) in seen:
            break
        seen.add(id(err))
        err = inner
    text = str(err).splitlines()[0] if str(err) else ""
    for marker in ("Connection refused", "timed out", "Read timed out", "Name or service"):
        if marker.lower() in text.lower():
            return f"{type(err).__name__} ({marker.lower()})"
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
