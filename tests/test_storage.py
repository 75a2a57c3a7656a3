"""simclr.storage against local paths and a real GCS emulator (no client mocks)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator

import pytest
from simclr import storage
from simclr.errors import UserError
from simclr.storage import files

from tests.fixtures_proxy import FaultProxy


@pytest.fixture(params=["local", "gcs", "s3"])
def root(request, tmp_path) -> str:
    """A fresh directory: a local path, or a prefix in a fresh bucket (GCS emulator, S3)."""
    if request.param == "local":
        return str(tmp_path / "root")
    return storage.join(request.getfixturevalue(f"{request.param}_bucket"), "some/prefix")


@pytest.fixture(params=["gcs", "s3"])
def bucket(request) -> str:
    """A fresh bucket, in the GCS emulator or on the S3 server."""
    return request.getfixturevalue(f"{request.param}_bucket")


def _make_tree(base) -> dict[str, bytes]:
    files = {"a.txt": b"alpha", "sub/b.bin": bytes(range(256)), "sub/deeper/c": b""}
    for rel, data in files.items():
        path = os.path.join(base, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return files


def test_join_and_is_remote():
    assert storage.is_remote("gs://b/x") and not storage.is_remote("/tmp/x")
    assert storage.join("gs://b/", "a/", "/c.json") == "gs://b/a/c.json"
    assert storage.join("gs://b", "") == "gs://b"
    assert storage.join("/tmp/x", "a", "b") == os.path.join("/tmp/x", "a", "b")


def test_round_trips_and_exists(root):
    assert not storage.exists(root)
    storage.write_bytes(storage.join(root, "x.bin"), b"\x00\x01")
    storage.write_text(storage.join(root, "d/t.txt"), "héllo")
    storage.write_json(storage.join(root, "d/m.json"), {"b": 1, "a": [1, 2]})
    assert storage.read_bytes(storage.join(root, "x.bin")) == b"\x00\x01"
    assert storage.read_text(storage.join(root, "d/t.txt")) == "héllo"
    assert storage.read_json(storage.join(root, "d/m.json")) == {"a": [1, 2], "b": 1}
    text = storage.read_text(storage.join(root, "d/m.json"))
    assert text == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    assert storage.exists(root) and storage.exists(storage.join(root, "d"))
    assert storage.exists(storage.join(root, "x.bin"))
    assert not storage.exists(storage.join(root, "nope"))
    assert storage.list_files(root) == ["d/m.json", "d/t.txt", "x.bin"]
    storage.delete(storage.join(root, "x.bin"))
    storage.delete(storage.join(root, "x.bin"))  # missing: no error
    assert storage.list_files(root) == ["d/m.json", "d/t.txt"]
    storage.delete_dir(root)
    assert storage.list_files(root) == [] and not storage.exists(root)


def test_missing_file_is_user_error_naming_it(root):
    missing = storage.join(root, "missing.json")
    storage.makedirs(root)
    with pytest.raises(UserError, match=f"^{missing}: not found$"):
        storage.read_json(missing)


def test_local_write_is_atomic_and_leaves_no_temp(tmp_path):
    path = str(tmp_path / "f.bin")
    storage.write_bytes(path, b"old")
    storage.write_bytes(path, b"new")
    assert os.listdir(tmp_path) == ["f.bin"]
    assert storage.read_bytes(path) == b"new"


def test_upload_download_dir_and_copy(tmp_path, bucket):
    files = _make_tree(tmp_path / "src")
    remote = storage.join(bucket, "tree")
    storage.upload_dir(str(tmp_path / "src"), remote)
    assert storage.list_files(remote) == sorted(files)
    storage.download_dir(remote, str(tmp_path / "back"))
    for rel, data in files.items():
        assert (tmp_path / "back" / rel).read_bytes() == data
    # files across every combination, then a whole directory gs -> gs -> local
    storage.copy(str(tmp_path / "src/a.txt"), storage.join(bucket, "one/a.txt"))
    storage.copy(storage.join(bucket, "one/a.txt"), storage.join(bucket, "two/a.txt"))
    storage.copy(storage.join(bucket, "two/a.txt"), str(tmp_path / "a_copy.txt"))
    storage.copy(str(tmp_path / "a_copy.txt"), str(tmp_path / "a_copy2.txt"))
    assert (tmp_path / "a_copy2.txt").read_bytes() == b"alpha"
    storage.copy(remote, storage.join(bucket, "tree2"))
    storage.copy(storage.join(bucket, "tree2"), str(tmp_path / "tree2"))
    assert storage.list_files(str(tmp_path / "tree2")) == sorted(files)
    assert (tmp_path / "tree2/sub/b.bin").read_bytes() == files["sub/b.bin"]


def test_copy_between_gcs_and_s3(tmp_path, gcs_bucket, s3_bucket):
    files = _make_tree(tmp_path / "src")
    storage.upload_dir(str(tmp_path / "src"), storage.join(gcs_bucket, "t"))
    storage.copy(storage.join(gcs_bucket, "t"), storage.join(s3_bucket, "t"))
    storage.copy(storage.join(s3_bucket, "t/sub/b.bin"), storage.join(gcs_bucket, "b.bin"))
    assert storage.list_files(storage.join(s3_bucket, "t")) == sorted(files)
    assert storage.read_bytes(storage.join(gcs_bucket, "b.bin")) == files["sub/b.bin"]


def test_localize_dir_caches_by_size_and_md5(tmp_path, bucket, monkeypatch):
    src = tmp_path / "src"
    _make_tree(src)
    remote = storage.join(bucket, "data")
    storage.upload_dir(str(src), remote)
    assert storage.localize_dir(str(src)) == str(src)  # local: no-op

    monkeypatch.setenv("SIMCLR_CACHE_DIR", str(tmp_path / "cache"))
    local = storage.localize_dir(remote)
    assert local.startswith(str(tmp_path / "cache"))
    assert storage.list_files(local) == storage.list_files(remote)
    inode = os.stat(os.path.join(local, "sub/b.bin")).st_ino

    storage.write_bytes(storage.join(remote, "a.txt"), b"ALPHA")  # same size, new md5
    storage.delete(storage.join(remote, "sub/deeper/c"))
    assert storage.localize_dir(remote) == local
    assert os.stat(os.path.join(local, "sub/b.bin")).st_ino == inode  # kept, not re-fetched
    assert open(os.path.join(local, "a.txt"), "rb").read() == b"ALPHA"
    assert storage.list_files(local) == ["a.txt", "sub/b.bin"]
    other = storage.localize_dir(remote, cache_root=str(tmp_path / "other"))
    assert other.startswith(str(tmp_path / "other")) and storage.list_files(other)


def _record_publish_order(monkeypatch) -> list[str]:
    """Spy on the last step of publishing (os.replace locally, upload_file for gs)."""
    order: list[str] = []
    real_replace, real_upload = os.replace, files.upload_file

    def replace(src, dst, **kw):
        order.append(os.path.basename(dst))
        return real_replace(src, dst, **kw)

    def upload(local, uri):
        order.append(uri.rsplit("/", 1)[-1])
        return real_upload(local, uri)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(files, "upload_file", upload)
    return order


def test_atomic_dir_publishes_manifest_last(root, monkeypatch):
    with storage.atomic_dir(root) as staging:
        assert not storage.is_remote(staging) and os.path.isdir(staging)
        storage.write_json(os.path.join(staging, "manifest.json"), {"ok": True})
        for i in range(5):
            storage.write_bytes(os.path.join(staging, f"shard-{i}"), b"x" * i)
        order = _record_publish_order(monkeypatch)  # only the publishing is recorded
    assert order[-1] == "manifest.json" and len(order) == 6
    assert storage.list_files(root) == ["manifest.json"] + [f"shard-{i}" for i in range(5)]
    assert not os.path.exists(staging)
    if not storage.is_remote(root):
        assert os.listdir(os.path.dirname(root)) == ["root"]  # no staging sibling left


def test_atomic_dir_publishes_nothing_on_error(root):
    with pytest.raises(RuntimeError), storage.atomic_dir(root) as staging:
        storage.write_json(os.path.join(staging, "manifest.json"), {})
        raise RuntimeError("boom")
    assert not os.path.exists(staging)
    assert not storage.exists(root) and storage.list_files(root) == []
    if not storage.is_remote(root):
        assert os.listdir(os.path.dirname(root)) == []


def test_directory_mirror_uploads_only_new_or_changed(tmp_path, root):
    local = tmp_path / "logs"
    local.mkdir()
    (local / "a").write_bytes(b"1")
    (local / "sub").mkdir()
    (local / "sub/b").write_bytes(b"22")
    mirror = storage.DirectoryMirror(str(local), root, interval_s=3600)
    assert mirror.sync() == 2
    assert mirror.sync() == 0
    (local / "a").write_bytes(b"1+more")  # appended, like an event file
    (local / "c").write_bytes(b"3")
    assert mirror.sync() == 2
    assert storage.read_bytes(storage.join(root, "a")) == b"1+more"
    assert storage.list_files(root) == ["a", "c", "sub/b"]
    # a new mirror (e.g. after a restart) recognises what is already there
    assert storage.DirectoryMirror(str(local), root).sync() == 0


def test_directory_mirror_thread_and_final_sync(tmp_path, bucket):
    local = tmp_path / "ckpt"
    local.mkdir()
    remote = storage.join(bucket, "ckpt")
    with storage.DirectoryMirror(str(local), remote, interval_s=0.05) as mirror:
        (local / "early").write_bytes(b"e")
        deadline = time.monotonic() + 10
        while not storage.exists(storage.join(remote, "early")):
            assert time.monotonic() < deadline, "background sync never uploaded"
            time.sleep(0.05)
        mirror.interval_s = 3600  # the next file must come from the final sync
        time.sleep(0.1)
        (local / "late").write_bytes(b"l")
    assert storage.list_files(remote) == ["early", "late"]
    assert mirror._thread is None


def test_directory_mirror_can_delete_removed(tmp_path, bucket):
    local = tmp_path / "ckpt"
    local.mkdir()
    (local / "old").write_bytes(b"o")
    mirror = storage.DirectoryMirror(str(local), bucket, delete_removed=True)
    assert mirror.sync() == 1
    (local / "old").unlink()
    (local / "new").write_bytes(b"n")
    assert mirror.sync() == 1
    assert storage.list_files(bucket) == ["new"]


def assert_missing_bucket_fails_fast(uri: str, tmp_path) -> None:
    """Every operation on a missing bucket is one error naming it, with no retry backoff."""
    (tmp_path / "f").write_bytes(b"x")
    calls = [
        lambda: storage.read_bytes(uri),
        lambda: storage.write_bytes(uri, b"x"),
        lambda: storage.list_files(uri),
        lambda: storage.upload_file(str(tmp_path / "f"), uri),
        lambda: storage.download_file(uri, str(tmp_path / "g")),
        lambda: storage.makedirs(uri),
        lambda: storage.localize_dir(uri, cache_root=str(tmp_path / "c")),
    ]
    bucket = uri.split("/")[2]
    for call in calls:
        start = time.monotonic()
        with pytest.raises(UserError, match=f"^{uri}: bucket '{bucket}' does not exist$"):
            call()
        assert time.monotonic() - start < 2.0  # no retry backoff on a permanent error
    assert not storage.exists(uri)
    assert not (tmp_path / "g").exists()


def test_missing_bucket_fails_fast(gcs_emulator, tmp_path):
    assert_missing_bucket_fails_fast("gs://no-such-bucket-xyz/x", tmp_path)


def test_missing_object_in_existing_bucket(bucket, tmp_path):
    uri = storage.join(bucket, "nope.bin")
    with pytest.raises(UserError, match=f"^{uri}: not found$"):
        storage.read_bytes(uri)
    with pytest.raises(UserError, match=f"^{uri}: not found$"):
        storage.download_file(uri, str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_bad_uris_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="gs://: no bucket"):
        storage.read_bytes("gs://")
    with pytest.raises(UserError, match="not found"):
        storage.upload_file(str(tmp_path / "missing"), str(tmp_path / "dst"))
    with pytest.raises(UserError, match="not valid JSON"):
        storage.write_text(str(tmp_path / "bad.json"), "{")
        storage.read_json(str(tmp_path / "bad.json"))


# Object requests only: the client also fetches bucket metadata in a background thread
# (google-cloud-storage 3.17 "bucket metadata cache"), which must not eat the 503s.
_OBJECT_PATH = re.compile(r"/b/[^/?]+/o([/?]|$)")


@pytest.fixture
def flaky_proxy(gcs_emulator, monkeypatch) -> Iterator[FaultProxy]:
    with FaultProxy(gcs_emulator, lambda _method, path: bool(_OBJECT_PATH.search(path))) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)  # a new cached client
        yield proxy


def test_transient_errors_are_retried(gcs_bucket, flaky_proxy):
    uri = storage.join(gcs_bucket, "flaky.json")
    flaky_proxy.fail_first = 2  # the upload (not idempotent by default) sees two 503s
    storage.write_json(uri, {"v": 1})
    assert [r[1] for r in flaky_proxy.requests] == [503, 503, 200]

    flaky_proxy.requests.clear()
    flaky_proxy.fail_first = 2
    assert storage.read_json(uri) == {"v": 1}
    assert [r[1] for r in flaky_proxy.requests] == [503, 503, 200]


def test_permanent_errors_are_not_retried(gcs_bucket, flaky_proxy):
    uri = storage.join(gcs_bucket, "absent")
    with pytest.raises(UserError, match="not found"):
        storage.read_bytes(uri)
    assert [r[1] for r in flaky_proxy.requests] == [404]  # asked once, not retried


def test_20mb_resumable_upload_survives_a_failed_chunk(gcs_bucket, flaky_proxy, tmp_path):
    data = os.urandom(20 * 1024 * 1024)
    (tmp_path / "big").write_bytes(data)
    uri = storage.join(gcs_bucket, "big/blob")
    flaky_proxy.fail_method, flaky_proxy.fail_first = "PUT", 1  # the data, not the start
    storage.upload_file(str(tmp_path / "big"), uri)
    storage.download_file(uri, str(tmp_path / "back"))
    assert (tmp_path / "back").read_bytes() == data
    sent = [(m, s) for m, s, path in flaky_proxy.requests if "uploadType=resumable" in path]
    assert sent[:2] == [("POST", 200), ("PUT", 503)] and sent[-1][1] == 200


def test_log_follower_appends_to_the_open_file_and_renames_new_ones(root, tmp_path):
    """TensorBoard keeps event files open: a grown file must grow in place (same inode)."""
    storage.write_bytes(storage.join(root, "run/events.out.tfevents.1"), b"first")
    follower = storage.LogFollower(root, str(tmp_path / "work"), interval_s=3600)
    follower.start()
    try:
        local = tmp_path / "work/logs/run/events.out.tfevents.1"
        assert local.read_bytes() == b"first"
        with open(local, "rb") as reader:  # like TensorBoard's loader
            assert reader.read() == b"first"
            inode = os.stat(local).st_ino
            storage.write_bytes(storage.join(root, "run/events.out.tfevents.1"), b"first+more")
            storage.write_bytes(storage.join(root, "eval/events.out.tfevents.2"), b"new")
            assert follower.sync() == 2 and follower.sync() == 0
            assert reader.read() == b"+more"  # the open handle sees the new events
        assert os.stat(local).st_ino == inode
        assert storage.list_files(str(tmp_path / "work/logs")) == [
            "eval/events.out.tfevents.2",
            "run/events.out.tfevents.1",
        ]
    finally:
        follower.stop()
