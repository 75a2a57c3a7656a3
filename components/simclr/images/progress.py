"""Progress lines for a long ingest: count, rate and ETA, at most every `every_s` seconds."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """`update(done, note)` logs "<what>: done/total (pct), rate/s, ETA h:mm:ss, <note>"."""

    def __init__(
        self,
        total: int,
        what: str,
        log: logging.Logger,
        every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.what, self.log, self.every_s, self.clock = total, what, log, every_s, clock
        self.start = clock()
        self.last_logged = self.start
        self.done = 0

    def rate(self) -> float:
        elapsed = self.clock() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self, note: str = "") -> str:
        rate = self.rate()
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = format_duration((self.total - self.done) / rate) if rate > 0 else "?"
        text = f"{self.what}: {self.done:,}/{self.total:,} files ({pct:.1f}%), {rate:,.0f} files/s, ETA {eta}"
        return f"{text}, {note}" if note else text

    def update(self, done: int, note: str = "") -> None:
        self.done = done
        now = self.clock()
        if now - self.last_logged >= self.every_s:
            self.last_logged = now
            self.log.info("%s", self.line(note))

    def elapsed(self) -> float:
        return self.clock() - self.start
