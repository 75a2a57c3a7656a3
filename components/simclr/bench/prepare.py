"""Benchmark: seconds prepare_data takes over a CIFAR-10 archive.

Uses `args.cifar10_source` when set; otherwise builds the full 60,000-image binary
archive with ../shared/tools/cifar10_tarball.py in a temporary directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simclr.errors import UserError
from simclr.tasks import prepare_data

_TOOL = Path(__file__).resolve().parents[3].parent / "shared" / "tools" / "cifar10_tarball.py"


def build_full_archive(out_dir: str) -> str:
    """Writes the full binary archive (50,000 + 10,000 real images) into out_dir."""
    if not _TOOL.is_file():
        raise UserError(f"no CIFAR-10 source given and {_TOOL} is missing; set --cifar10_source")
    subprocess.run([sys.executable, str(_TOOL), "--out", out_dir], check=True, capture_output=True)
    return os.path.join(out_dir, "cifar-10-binary.tar.gz")


def time_prepare(source: str, work_dir: str, num_shards: int = 16) -> tuple[float, dict[str, Any]]:
    """(seconds, manifest) of one prepare_data run from `source` into work_dir/data."""
    config = prepare_data.PrepareDataConfig(
        source=source,
        output_dir=os.path.join(work_dir, "data"),
        num_shards=num_shards,
        cache_dir=os.path.join(work_dir, "cache"),
    )
    start = time.perf_counter()
    manifest = prepare_data.run(config)
    return time.perf_counter() - start, manifest


def benchmarks(args: Any) -> Iterator[dict[str, Any]]:
    source = getattr(args, "cifar10_source", None)
    with tempfile.TemporaryDirectory(prefix="simclr-bench-prepare-") as work:
        if not source:
            source = build_full_archive(work)
        seconds, manifest = time_prepare(source, work)
        yield {
            "name": "prepare_data_seconds",
            "value": round(seconds, 3),
            "unit": "s",
            "archive": source
            if getattr(args, "cifar10_source", None)
            else "cifar-10-binary.tar.gz (full, built)",
            "num_examples": sum(s["num_examples"] for s in manifest["splits"].values()),
        }
