"""Data fixtures (see conftest.py): real CIFAR-10 archives, synthetic ones, prepared data.

- `shared_dir`: Path to ../shared (real data and tools).
- `real_cifar_archive`: Path to a binary archive of 5,000 train / 1,000 test real images.
- `real_prepared_data`: str path of prepare_data's output over it (4 shards; 0.01, 0.1).
- `tiny_prepared_data`: str path of prepare_data's output over a synthetic archive of
  200 train / 100 test images (4 shards; label fractions 0.01, 0.1 -> 1 and 2 per class).
- `make_synthetic_archive(path, ...)`: writes a synthetic archive (optionally corrupted)
  and returns a `SyntheticArchive` with the images and labels it wrote.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

__all__ = [
    "CLASS_NAMES",
    "SyntheticArchive",
    "make_synthetic_archive",
    "real_cifar_archive",
    "real_prepared_data",
    "shared_dir",
    "tiny_prepared_data",
    "tiny_synthetic_archive",
]

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"
CLASS_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


@dataclass
class SyntheticArchive:
    """What make_synthetic_archive wrote: images uint8 [N,32,32,3] (HWC), labels int64."""

    path: Path
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]


class _RunsShell:
    """A pickle payload: unpickling it with plain pickle.load would run a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def prepare_data_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs the prepare_data task in a fresh interpreter (the command users run)."""
    return subprocess.run(
        [sys.executable, "-m", "simclr.tasks.prepare_data", *args],
        cwd=Path(__file__).resolve().parents[1],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _random_split(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.permutation(np.arange(n) % 10).astype(np.int64)
    return images, labels


def _planar(images: np.ndarray) -> np.ndarray:
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def make_synthetic_archive(
    path: Path | str,
    layout: str = "binary",
    num_train: int = 200,
    num_test: int = 100,
    seed: int = 0,
    *,
    truncate: int = 0,
    extra_bytes: int = 0,
    bad_label: int | None = None,
    pickle_payload: str | None = None,
    unsafe_member: str | None = None,
    missing_member: str | None = None,
    class_names: list[str] | None = None,
) -> SyntheticArchive:
    """Writes a CIFAR-10 archive in the official `layout` ("binary" or "python").

    `path` is the archive file (*.tar.gz), or a directory to write the official name into.
    Training images are split over the five data batches (any counts). Corruptions:
    `truncate` (drop that many bytes from the end of the .tar.gz), `extra_bytes` (append
    to data_batch_2: a partial record), `bad_label` (the first test label), `pickle_payload`
    (python layout: data_batch_1 becomes a pickle that would run this shell command),
    `unsafe_member` (add a member with this name, e.g. "../evil"), `missing_member`
    (leave out e.g. "data_batch_3"), `class_names` (the meta member's names).
    """
    path = Path(path)
    official = f"cifar-10-{layout}.tar.gz"
    if path.is_dir() or not path.name.endswith((".tar.gz", ".tgz", ".tar")):
        path = path / official
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_x, train_y = _random_split(rng, num_train)
    test_x, test_y = _random_split(rng, num_test)
    names = list(CLASS_NAMES if class_names is None else class_names)
    written_test_y = test_y.copy()
    if bad_label is not None:
        written_test_y[0] = bad_label
    bounds = np.linspace(0, num_train, 6).round().astype(int)
    batches = [(f"data_batch_{i + 1}", slice(bounds[i], bounds[i + 1])) for i in range(5)]
    top = "cifar-10-batches-bin" if layout == "binary" else "cifar-10-batches-py"

    with tarfile.open(path, "w:gz") as tar:
        members = [(n, train_x[s], train_y[s]) for n, s in batches]
        members.append(("test_batch", test_x, written_test_y))
        for name, x, y in members:
            if name == missing_member:
                continue
            if layout == "binary":
                data = np.concatenate([y[:, None].astype(np.uint8), _planar(x)], axis=1).tobytes()
                if name == "data_batch_2":
                    data += b"\x07" * extra_bytes
                _add(tar, f"{top}/{name}.bin", data)
            else:
                content = {
                    b"batch_label": name.encode(),
                    b"labels": [int(v) for v in y],
                    b"data": _planar(x),
                }
                if name == "data_batch_1" and pickle_payload is not None:
                    content[b"data"] = _RunsShell(pickle_payload)
                data = pickle.dumps(content, protocol=2 if name == "test_batch" else 3)
                _add(tar, f"{top}/{name}", data)
        if layout == "binary":
            if missing_member != "batches.meta.txt":
                _add(tar, f"{top}/batches.meta.txt", ("\n".join(names) + "\n\n").encode())
        elif missing_member != "batches.meta":
            meta = {
                b"num_cases_per_batch": num_train // 5,
                b"label_names": [n.encode() for n in names],
            }
            _add(tar, f"{top}/batches.meta", pickle.dumps(meta, protocol=3))
        if unsafe_member is not None:
            _add(tar, unsafe_member, b"not part of CIFAR-10\n")
    if truncate:
        blob = path.read_bytes()
        path.write_bytes(blob[: len(blob) - truncate])
    return SyntheticArchive(path, train_x, train_y, test_x, test_y, names)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert (SHARED_DIR / "tools" / "cifar10_tarball.py").is_file(), SHARED_DIR
    return SHARED_DIR


@pytest.fixture(scope="session")
def real_cifar_archive(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cifar10_real")
    tool = shared_dir / "tools" / "cifar10_tarball.py"
    subprocess.run(
        [sys.executable, str(tool), "--out", str(out), "--train", "5000", "--test", "1000"],
        check=True,
        capture_output=True,
    )
    archive = out / "cifar-10-binary.tar.gz"
    assert archive.is_file()
    return archive


def _prepare(source: Path, out: Path, cache: Path) -> str:
    from simclr.tasks import prepare_data

    config = prepare_data.PrepareDataConfig(
        source=str(source),
        output_dir=str(out),
        num_shards=4,
        label_fractions=(0.01, 0.1),
        seed=0,
        cache_dir=str(cache),
    )
    prepare_data.run(config)
    return str(out)


@pytest.fixture(scope="session")
def real_prepared_data(real_cifar_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("real_prepared")
    return _prepare(real_cifar_archive, root / "data", root / "cache")


@pytest.fixture(scope="session")
def tiny_synthetic_archive(tmp_path_factory: pytest.TempPathFactory) -> SyntheticArchive:
    """The synthetic archive behind tiny_prepared_data (200 train / 100 test)."""
    return make_synthetic_archive(
        tmp_path_factory.mktemp("tiny_archive"), num_train=200, num_test=100
    )


@pytest.fixture(scope="session")
def tiny_prepared_data(
    tiny_synthetic_archive: SyntheticArchive, tmp_path_factory: pytest.TempPathFactory
) -> str:
    root = tmp_path_factory.mktemp("tiny_prepared")
    return _prepare(tiny_synthetic_archive.path, root / "data", root / "cache")
