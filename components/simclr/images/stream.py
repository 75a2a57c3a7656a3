"""The ingest stream: read, hash, drop duplicates, convert in parallel, in sorted order.

    files (sorted) --threads--> bytes + sha256 --dedup--> batches --processes--> outcomes

- Reading is I/O-bound (a GET of a bucket object waits tens of milliseconds): a thread
  pool keeps `fetch_window` reads in flight. Hashing happens in those threads too
  (hashlib releases the GIL).
- Duplicates (same sha256 as an earlier file) are dropped before conversion: the first
  file in sorted order is kept. Zero-byte files are bad files, not duplicates of each
  other.
- Conversion is CPU-bound: batches of up to `batch_items` files or `batch_bytes` bytes
  go to worker processes (batching amortises the inter-process round trip, which
  costs more than decoding a 32x32 JPEG), at most `decode_window` batches in flight.
- Everything comes out in input order, so the output never depends on scheduling;
  memory holds at most fetch_window files + decode_window batches, whatever the count.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
from collections.abc import Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from simclr import storage
from simclr.errors import UserError
from simclr.images.convert import Converted, ConvertSpec, Rejected, convert_batch
from simclr.images.parallel import ordered_map, process_pool
from simclr.images.sources import ImageFile

BATCH_ITEMS = 32
BATCH_BYTES = 8 << 20


@dataclass(frozen=True)
class Duplicate:
    """Same bytes as the earlier file `of` (its path), which is kept instead."""

    of: str


@dataclass(frozen=True)
class Outcome:
    file: ImageFile
    sha256: str | None  # hex digest of the file's bytes; None when it could not be read
    result: Converted | Rejected | Duplicate


@dataclass
class _Slot:
    file: ImageFile
    digest: bytes | None
    data: bytes | None = None  # to convert; None when `decided`
    decided: Rejected | Duplicate | None = None


def read_file(uri: str) -> bytes | Rejected:
    """The file's bytes, or Rejected("unreadable") for a file that is missing, denied,
    a directory or failing with an I/O error. Store-wide failures (a missing bucket,
    rejected credentials, an unreachable endpoint) are not one bad file: they raise."""
    try:
        return storage.read_bytes(uri)
    except UserError as err:
        message = str(err)
        if not storage.is_remote(uri) or message.endswith((": not found", ": permission denied")):
            return Rejected("unreadable", message)
        raise
    except OSError as err:
        if storage.is_remote(uri):
            raise
        return Rejected("unreadable", f"{uri}: {err.strerror or err}")


def _fetch(file: ImageFile) -> tuple[bytes | None, bytes | Rejected]:
    data = read_file(file.uri)
    if isinstance(data, Rejected):
        return None, data
    digest = hashlib.sha256(data).digest()
    if not data:
        return digest, Rejected("empty", "zero bytes")
    return digest, data


def _batches(
    fetched: Iterable[tuple[ImageFile, tuple[bytes | None, bytes | Rejected]]],
    batch_items: int,
    batch_bytes: int,
) -> Iterator[list[_Slot]]:
    first_path: dict[bytes, str] = {}
    batch: list[_Slot] = []
    size = 0
    for file, (digest, data) in fetched:
        if isinstance(data, Rejected):
            slot = _Slot(file, digest, decided=data)
        elif digest in first_path:
            slot = _Slot(file, digest, decided=Duplicate(first_path[digest]))
        else:
            first_path[digest] = file.path
            slot = _Slot(file, digest, data=data)
            size += len(data)
        batch.append(slot)
        if len(batch) >= batch_items or size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _submit(
    pool: concurrent.futures.Executor, batch: list[_Slot], spec: ConvertSpec
) -> concurrent.futures.Future:
    todo = [slot.data for slot in batch if slot.data is not None]
    if not todo:
        done: concurrent.futures.Future = concurrent.futures.Future()
        done.set_result([])
        return done
    return pool.submit(convert_batch, todo, spec)


def _outcomes(batch: list[_Slot], converted: list[Converted | Rejected]) -> Iterator[Outcome]:
    results = iter(converted)
    for slot in batch:
        result = slot.decided if slot.decided is not None else next(results)
        yield Outcome(slot.file, slot.digest.hex() if slot.digest else None, result)


def convert_stream(
    files: Iterable[ImageFile],
    spec: ConvertSpec,
    *,
    workers: int,
    fetch_threads: int = 8,
    fetch_window: int = 32,
    decode_window: int | None = None,
    batch_items: int = BATCH_ITEMS,
    batch_bytes: int = BATCH_BYTES,
) -> Iterator[Outcome]:
    """One Outcome per file, in the order of `files` (see the module docstring).

    `workers` processes convert (1: this process). `decode_window` defaults to two
    batches per worker, so no worker waits while the next batch is read.
    """
    decode_window = decode_window or 2 * max(1, workers)
    with (
        concurrent.futures.ThreadPoolExecutor(fetch_threads, "simclr-ingest-read") as io_pool,
        process_pool(workers) as cpu_pool,
    ):
        fetched = ordered_map(lambda f: io_pool.submit(_fetch, f), files, fetch_window)
        batches = _batches(fetched, batch_items, batch_bytes)
        converted = ordered_map(lambda b: _submit(cpu_pool, b, spec), batches, decode_window)
        try:
            while True:
                try:
                    batch, results = next(converted)
                except StopIteration:
                    return
                except BrokenProcessPool as err:
                    raise UserError(
                        f"an image decoder process died ({err}); if it was killed for "
                        "memory, lower --max_image_pixels or the number of workers"
                    ) from None
                yield from _outcomes(batch, results)
        finally:
            converted.close()
            batches.close()
            fetched.close()
