"""Reading the CIFAR-10 archive: fetching, integrity checks, both official layouts.

The archive is read member by member from the (gzipped) tar stream in memory; nothing
is extracted to disk. The python layout is a pickle, so it is loaded with a restricted
unpickler that only reconstructs numpy arrays: a tampered archive cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import posixpath
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass

import numpy as np

from simclr import storage
from simclr.errors import UserError

_log = logging.getLogger(__name__)

OFFICIAL_BASE_URL = "https://www.cs.toronto.edu/~kriz/"
DEFAULT_SOURCE = OFFICIAL_BASE_URL + "cifar-10-binary.tar.gz"
OFFICIAL_MD5 = {
    "cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883add8d4a3",
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
}
NUM_CLASSES = 10
IMAGE_BYTES = 3072
BINARY_RECORD = 1 + IMAGE_BYTES
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
# Layout -> (member suffix of the data batches, name of the class-names member).
LAYOUTS = {"binary": (".bin", "batches.meta.txt"), "python": ("", "batches.meta")}


@dataclass
class Cifar10:
    """The decoded archive: images uint8 [N,32,32,3] (HWC), labels int64 [N]."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]
    layout: str


# --------------------------------------------------------------------------- fetching


def default_cache_dir() -> str:
    """$SIMCLR_CACHE_DIR, else ~/.cache/simclr-kfp."""
    return storage.default_cache_root()


def is_official(source: str) -> bool:
    """Official file name AND the official URL: only then is the published MD5 expected."""
    name = posixpath.basename(source)
    return name in OFFICIAL_MD5 and source == OFFICIAL_BASE_URL + name


def file_digests(path: str) -> tuple[str, str]:
    """(sha256, md5) hex digests of a local file."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def check_sha256_flag(sha256: str | None) -> str | None:
    if not sha256:
        return None
    value = sha256.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise UserError(f"--sha256 must be 64 hex digits, got {sha256!r}")
    return value


def verify(source: str, path: str, sha256: str | None) -> dict[str, str]:
    """Checks the archive's checksum; returns the manifest's "source" entry.

    Official archive from the official URL: its published MD5. Otherwise --sha256 when
    given (also checked for the official one, if given). The sha256 is recorded always.
    """
    actual_sha, actual_md5 = file_digests(path)
    entry = {"uri": source, "sha256": actual_sha, "verified": "none"}
    if is_official(source):
        expected = OFFICIAL_MD5[posixpath.basename(source)]
        if actual_md5 != expected:
            raise UserError(
                f"--source {source}: MD5 mismatch: got {actual_md5}, the published value is {expected}"
            )
        entry.update(md5=actual_md5, verified="md5")
    expected_sha = check_sha256_flag(sha256)
    if expected_sha is not None:
        if actual_sha != expected_sha:
            raise UserError(
                f"--sha256 mismatch for {source}: got {actual_sha}, expected {expected_sha}"
            )
        entry["verified"] = "md5+sha256" if entry["verified"] == "md5" else "sha256"
    return entry


def fetch(source: str, cache_dir: str | None = None, sha256: str | None = None) -> str:
    """A local path of the archive: local as is; https/http/gs/s3:// downloaded into a cache.

    The cache is keyed by the expected checksum (the official MD5, else --sha256), or by
    the URI when no checksum is known; a cached copy is reused only if it verifies.
    """
    if not source:
        raise UserError("--source is empty")
    if "://" not in storage.local_path(source):  # a path, or file://PATH
        path = storage.local_path(source)
        if not os.path.isfile(path):
            raise UserError(f"--source {source}: no such file")
        return path
    scheme = source.split("://", 1)[0]
    if scheme.lower() not in ("https", "http") and scheme not in storage.REMOTE_STORES:
        stores = ", ".join(f"{s}://" for s in storage.REMOTE_STORES)
        raise UserError(
            f"--source {source}: unsupported scheme {scheme}:// (use https://, {stores} or a path)"
        )
    name = posixpath.basename(source.split("?", 1)[0].rstrip("/")) or "archive.tar.gz"
    expected = check_sha256_flag(sha256)
    if is_official(source):
        key = "md5-" + OFFICIAL_MD5[name]
    elif expected:
        key = "sha256-" + expected
    else:
        key = "uri-" + hashlib.sha256(source.encode()).hexdigest()[:32]
    path = os.path.join(cache_dir or default_cache_dir(), "archives", key, name)
    if os.path.isfile(path) and _cached_ok(source, path, sha256):
        _log.info("using cached %s for %s", path, source)
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=os.path.dirname(path))
    os.close(fd)
    try:
        if scheme in storage.REMOTE_STORES:
            _log.info("downloading %s", source)
            storage.download_file(source, tmp)
        else:
            _download_url(source, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _cached_ok(source: str, path: str, sha256: str | None) -> bool:
    try:
        verify(source, path, sha256)
        return True
    except UserError:
        return False


def _download_url(url: str, dest: str, chunk: int = 1 << 20) -> None:
    """Streams `url` to `dest`, logging progress about every 10%."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done, next_report = 0, 0.0
            _log.info("downloading %s (%s bytes)", url, total or "unknown")
            while block := response.read(chunk):
                out.write(block)
                done += len(block)
                if total and done / total >= next_report:
                    _log.info("downloaded %d/%d bytes (%.0f%%)", done, total, 100 * done / total)
                    next_report = done / total + 0.1
            if total and done != total:
                raise UserError(f"--source {url}: download ended after {done} of {total} bytes")
            _log.info("downloaded %s: %d bytes", url, done)
    except urllib.error.HTTPError as err:
        raise UserError(f"--source {url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise UserError(f"--source {url}: cannot download: {reason}") from None


# --------------------------------------------------------------------------- reading


def read_members(path: str, wanted: set[str]) -> tuple[dict[str, tuple[str, bytes]], set[str]]:
    """Reads the members whose base name is in `wanted` from the tar stream, in memory.

    Returns ({basename: (member name, bytes)}, all base names seen). Every member name is
    checked: absolute paths and `..` are refused. A truncated or corrupt stream is an
    error naming the member being read.
    """
    found: dict[str, tuple[str, bytes]] = {}
    seen: set[str] = set()
    current = "(start of archive)"
    try:
        with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                current = member.name
                _check_member_name(path, member.name)
                base = posixpath.basename(member.name.rstrip("/"))
                seen.add(base)
                if not member.isfile() or base not in wanted:
                    continue
                if base in found:
                    raise UserError(
                        f"{path}: member {base} appears twice ({found[base][0]}, {member.name})"
                    )
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                if len(data) != member.size:
                    raise UserError(
                        f"{path}: member {member.name} is truncated ({len(data)} of {member.size} bytes)"
                    )
                found[base] = (member.name, data)
            current = "(end of archive)"
    except UserError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise UserError(
            f"{path}: archive is truncated or corrupt at member {current}: {err}"
        ) from None
    return found, seen


def _check_member_name(path: str, name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        raise UserError(f"{path}: refusing archive member with an unsafe path: {name!r}")


def detect_layout(path: str, seen: set[str]) -> str:
    if "data_batch_1.bin" in seen or "batches.meta.txt" in seen:
        return "binary"
    if "data_batch_1" in seen or "batches.meta" in seen:
        return "python"
    raise UserError(
        f"{path}: not a CIFAR-10 archive (no data_batch_1.bin or data_batch_1 member; "
        "expected cifar-10-binary.tar.gz or cifar-10-python.tar.gz)"
    )


def read_archive(path: str) -> Cifar10:
    """Decodes and validates a CIFAR-10 archive in either official layout."""
    all_names = {m + s for s in (".bin", "") for m in (*TRAIN_BATCHES, TEST_BATCH)}
    all_names |= {meta for _, meta in LAYOUTS.values()}
    members, seen = read_members(path, all_names)
    layout = detect_layout(path, seen)
    suffix, meta_name = LAYOUTS[layout]
    needed = [b + suffix for b in (*TRAIN_BATCHES, TEST_BATCH)] + [meta_name]
    missing = [n for n in needed if n not in members]
    if missing:
        raise UserError(f"{path}: {layout} archive is missing member(s) {', '.join(missing)}")
    decode = _decode_binary if layout == "binary" else _decode_python
    train = [decode(path, *members[b + suffix]) for b in TRAIN_BATCHES]
    test_images, test_labels = decode(path, *members[TEST_BATCH + suffix])
    meta = _binary_meta if layout == "binary" else _python_meta
    return Cifar10(
        train_images=np.concatenate([x for x, _ in train]),
        train_labels=np.concatenate([y for _, y in train]),
        test_images=test_images,
        test_labels=test_labels,
        class_names=meta(path, *members[meta_name]),
        layout=layout,
    )


def _planar_to_hwc(planar: np.ndarray) -> np.ndarray:
    """[N, 3072] (R, G, B planes, row-major) -> [N, 32, 32, 3]."""
    return np.ascontiguousarray(planar.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _check_labels(path: str, member: str, labels: np.ndarray) -> np.ndarray:
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        bad = int(labels[(labels < 0) | (labels >= NUM_CLASSES)][0])
        raise UserError(f"{path}: member {member} has label {bad} outside 0..{NUM_CLASSES - 1}")
    return labels.astype(np.int64)


def _decode_binary(path: str, member: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    if not data or len(data) % BINARY_RECORD:
        raise UserError(
            f"{path}: member {member} has {len(data)} bytes, not a whole number of "
            f"{BINARY_RECORD}-byte records"
        )
    records = np.frombuffer(data, np.uint8).reshape(-1, BINARY_RECORD)
    labels = _check_labels(path, member, records[:, 0])
    return _planar_to_hwc(records[:, 1:]), labels


def _decode_python(path: str, member: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = _str_keys(safe_unpickle(path, member, data))
    images, labels = batch.get("data"), batch.get("labels")
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.ndim != 2
        or images.shape[1] != IMAGE_BYTES
    ):
        shape = getattr(images, "shape", None)
        raise UserError(
            f"{path}: member {member}: 'data' must be a uint8 array [N, {IMAGE_BYTES}], got {shape}"
        )
    if (
        not isinstance(labels, (list, tuple, np.ndarray))
        or len(labels) != len(images)
        or not len(images)
    ):
        raise UserError(
            f"{path}: member {member}: 'labels' must list one label per image ({len(images)})"
        )
    try:
        label_array = np.asarray(labels, np.int64)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{path}: member {member}: 'labels' are not integers") from None
    return _planar_to_hwc(images), _check_labels(path, member, label_array)


def _binary_meta(path: str, member: str, data: bytes) -> list[str]:
    names = [
        line.strip() for line in data.decode("utf-8", errors="replace").splitlines() if line.strip()
    ]
    return _check_class_names(path, member, names)


def _python_meta(path: str, member: str, data: bytes) -> list[str]:
    names = _str_keys(safe_unpickle(path, member, data)).get("label_names")
    if not isinstance(names, list):
        raise UserError(f"{path}: member {member} has no 'label_names' list")
    decoded = [
        n.decode("utf-8", errors="replace") if isinstance(n, bytes) else str(n) for n in names
    ]
    return _check_class_names(path, member, decoded)


def _check_class_names(path: str, member: str, names: list[str]) -> list[str]:
    if len(names) != NUM_CLASSES:
        raise UserError(
            f"{path}: member {member} lists {len(names)} class names, expected {NUM_CLASSES}"
        )
    return names


def _str_keys(obj: object) -> dict:
    if not isinstance(obj, dict):
        raise UserError(f"expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


# --------------------------------------------------------------------------- safe pickle

# Exactly what numpy array reconstruction needs (both numpy 1 and 2 module names), plus
# what python-2/protocol-2 pickles use for bytes. Nothing that can call arbitrary code.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
        ("builtins", "bytearray"),
        ("__builtin__", "bytearray"),
    }
)


class RestrictedUnpickler(pickle.Unpickler):
    """Refuses every global outside numpy array reconstruction."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refused to load global {module}.{name}")
        if module.startswith("numpy.core."):  # numpy 2 moved it; avoid the shim's warning
            module = "numpy._core." + module[len("numpy.core.") :]
        return super().find_class(module, name)


def safe_unpickle(path: str, member: str, data: bytes) -> object:
    """Unpickles with RestrictedUnpickler; any failure is a UserError naming the member."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as err:  # a malformed pickle can raise almost anything
        raise UserError(f"{path}: member {member}: unsafe or malformed pickle: {err}") from None
