"""simclr.images.parallel and the stream: ordered, bounded in memory, CPUs from cgroups."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from simclr.images.parallel import InlineExecutor, available_cpus, ordered_map, process_pool

REPO = Path(__file__).resolve().parents[1]


def test_ordered_map_keeps_order_and_at_most_window_in_flight() -> None:
    pulled, yielded, in_flight_max = [0], [0], [0]
    lock = threading.Lock()

    def items():
        for i in range(40):
            with lock:
                pulled[0] += 1
                in_flight_max[0] = max(in_flight_max[0], pulled[0] - yielded[0])
            yield i

    def work(i: int) -> int:
        time.sleep(0.002 * (i % 5))  # later items often finish first
        return i * i

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        out = []
        for item, result in ordered_map(lambda i: pool.submit(work, i), items(), window=4):
            with lock:
                yielded[0] += 1
            out.append((item, result))
    assert out == [(i, i * i) for i in range(40)]
    assert in_flight_max[0] <= 4  # never more than the window pulled ahead of the consumer


def test_closing_ordered_map_cancels_what_has_not_started() -> None:
    started = []
    gate = threading.Event()

    def work(i: int) -> int:
        started.append(i)
        if i:  # item 0 returns at once; item 1 then holds the only thread
            gate.wait(5)
        return i

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        stream = ordered_map(lambda i: pool.submit(work, i), range(100), window=5)
        assert next(stream) == (0, 0)
        stream.close()  # items 2-4 are queued: cancelled; 5-99 were never submitted
        gate.set()
    assert started in ([0], [0, 1])  # 1 may have started before the close; 2-99 never


def test_inline_executor_runs_in_this_process() -> None:
    pool = process_pool(1)
    assert isinstance(pool, InlineExecutor)
    assert pool.submit(os.getpid).result() == os.getpid()
    failing = pool.submit(int, "x")
    with pytest.raises(ValueError):
        failing.result()


def _cgroup(tmp_path: Path, files: dict[str, str]) -> str:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return str(tmp_path)


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "150000 100000\n"}, 2),  # v2: 1.5 CPUs -> 2
        ({"cpu.max": "50000 100000\n"}, 1),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "1\n"}, None),
        ({}, None),
    ],
)
def test_available_cpus_honours_a_cgroup_quota(tmp_path: Path, files: dict, limit) -> None:
    affinity = len(os.sched_getaffinity(0))
    expected = affinity if limit is None else min(affinity, limit)
    assert available_cpus(_cgroup(tmp_path, files)) == expected


_MEASURE = """
import json, resource, sys
from simclr.images import IngestOptions, ingest
run = ingest(sys.argv[1], sys.argv[2], IngestOptions(image_size=32, workers=2, test_fraction=0))
print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "images": run.stats.images, "processes": run.stats.worker_processes}))
"""


def _ingest_peak_rss(source: Path, out: Path) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(source), str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _big_bmps(root: Path, count: int) -> int:
    """`count` distinct 1000x700 BMPs (2.1 MB each, uncompressed); returns bytes written."""
    root.mkdir(parents=True)
    template = bytearray()
    buffer = __import__("io").BytesIO()
    Image.radial_gradient("L").resize((1000, 700)).convert("RGB").save(buffer, "BMP")
    template = bytearray(buffer.getvalue())
    for i in range(count):
        template[-8:] = i.to_bytes(8, "little")  # distinct bytes: not duplicates
        (root / f"{i:04d}.bmp").write_bytes(template)
    return count * len(template)


def test_memory_stays_bounded_whatever_the_number_of_images(tmp_path: Path) -> None:
    """4x the images (+250 MB of input) must not grow the ingest's peak memory."""
    small_bytes = _big_bmps(tmp_path / "small", 30)
    large_bytes = _big_bmps(tmp_path / "large", 150)
    small = _ingest_peak_rss(tmp_path / "small", tmp_path / "out_small")
    large = _ingest_peak_rss(tmp_path / "large", tmp_path / "out_large")
    assert (small["images"], large["images"]) == (30, 150)
    assert large["processes"] == 2  # converted in two worker processes
    growth_mb = (large["maxrss_kb"] - small["maxrss_kb"]) / 1024
    extra_input_mb = (large_bytes - small_bytes) / 2**20
    assert extra_input_mb > 240
    print(f"peak RSS {small['maxrss_kb'] // 1024} MB -> {large['maxrss_kb'] // 1024} MB")
    assert growth_mb < 60, (growth_mb, small, large)
