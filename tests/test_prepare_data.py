"""prepare_data: sources (local, https, gs://), integrity, bad input via the CLI, idempotence."""

from __future__ import annotations

import functools
import http.server
import logging
import os
import pickle
import re
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from simclr import cifar, data, storage
from simclr.errors import UserError
from simclr.tasks import prepare_data

from tests.fixtures_data import make_synthetic_archive, prepare_data_cli

REPO = Path(__file__).resolve().parents[1]


BAD_INPUTS = {
    "truncated": ({"truncate": 3000}, [], "truncated or corrupt"),
    "wrong_sha256": ({}, ["--sha256=" + "0" * 64], "--sha256 mismatch"),
    "record_length": (
        {"extra_bytes": 100},
        [],
        "data_batch_2.bin has .* not a whole number of 3073-byte",
    ),
    "label_range": ({"bad_label": 10}, [], "test_batch.bin has label 10 outside 0..9"),
    "dotdot_member": ({"unsafe_member": "cifar-10-batches-bin/../../evil.txt"}, [], "unsafe path"),
    "missing_member": ({"missing_member": "data_batch_3"}, [], "missing member.*data_batch_3.bin"),
    "pickle_payload": (
        {"layout": "python"},
        [],
        "data_batch_1: unsafe or malformed pickle.*refused .*system",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_error_line_and_no_manifest(case: str, tmp_path: Path) -> None:
    corruption, extra_flags, expected = BAD_INPUTS[case]
    marker = tmp_path / "pwned"
    if case == "pickle_payload":
        corruption = dict(corruption, pickle_payload=f"touch {marker}")
    archive = make_synthetic_archive(tmp_path / "src", num_train=50, num_test=20, **corruption)
    out = tmp_path / "out"
    result = prepare_data_cli(
        f"--source={archive.path}",
        f"--output_dir={out}",
        f"--cache_dir={tmp_path}/cache",
        *extra_flags,
    )
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(expected, lines[0]), lines[0]
    assert not (out / "manifest.json").exists()
    assert not marker.exists()  # the pickle's os.system never ran
    if case == "pickle_payload":  # ... and the payload is live: plain pickle would run it
        with tarfile.open(archive.path) as tar:
            pickle.loads(tar.extractfile("cifar-10-batches-py/data_batch_1").read())
        assert marker.exists()


def test_cli_writes_manifest_and_is_byte_identical_on_rerun(tmp_path: Path) -> None:
    archive = make_synthetic_archive(tmp_path, num_train=120, num_test=40, seed=5)
    outs = [tmp_path / "a", tmp_path / "b"]
    result = prepare_data_cli(
        f"--source={archive.path}",
        f"--output_dir={outs[0]}",
        "--num_shards=3",
        "--label_fractions=0.1,0.5",
        "--seed=4",
    )
    assert result.returncode == 0, result.stderr
    # The KFP adapter's way in: run() with plain values (fractions as a string, too).
    prepare_data.run(
        prepare_data.PrepareDataConfig(
            source=str(archive.path),
            output_dir=str(outs[1]),
            num_shards=3,
            label_fractions="0.5,0.1",
            seed=4,
        )
    )
    files = sorted(os.listdir(outs[0]))
    assert files == sorted(os.listdir(outs[1]))
    assert files == [
        "label_0.1.tfrecord", "label_0.5.tfrecord", "manifest.json",
        "test-00000-of-00001.tfrecord",
        "train-00000-of-00003.tfrecord", "train-00001-of-00003.tfrecord", "train-00002-of-00003.tfrecord",
    ]  # fmt: skip
    for name in files:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    manifest = data.load_manifest(str(outs[0]))
    sha = cifar.file_digests(str(archive.path))[0]
    assert manifest["source"] == {
        "uri": str(archive.path),
        "sha256": sha,
        "verified": "none",
        "layout": "binary",
    }
    assert [s["num_examples"] for s in manifest["splits"]["train"]["shards"]] == [40, 40, 40]
    assert manifest["label_subsets"]["0.5"]["class_counts"] == [6] * 10
    # A different seed draws a different subset.
    other = prepare_data.run(
        prepare_data.PrepareDataConfig(
            source=str(archive.path),
            output_dir=str(tmp_path / "c"),
            num_shards=3,
            label_fractions=(0.5,),
            seed=5,
        )
    )
    assert (
        other["label_subsets"]["0.5"]["indices_sha256"]
        != manifest["label_subsets"]["0.5"]["indices_sha256"]
    )


def test_sha256_flag_checked_when_right(tmp_path: Path) -> None:
    archive = make_synthetic_archive(tmp_path, layout="python", num_train=50, num_test=20)
    sha = cifar.file_digests(str(archive.path))[0]
    manifest = prepare_data.run(
        prepare_data.PrepareDataConfig(
            source=str(archive.path), output_dir=str(tmp_path / "o"), sha256=sha.upper()
        )
    )
    assert manifest["source"]["verified"] == "sha256" and manifest["source"]["sha256"] == sha
    with pytest.raises(UserError, match="--sha256 must be 64 hex digits"):
        prepare_data.run(
            prepare_data.PrepareDataConfig(
                source=str(archive.path), output_dir=str(tmp_path / "p"), sha256="abc"
            )
        )


def test_official_archive_name_from_official_url_needs_published_md5(tmp_path: Path) -> None:
    archive = make_synthetic_archive(tmp_path, num_train=50, num_test=20)
    official = cifar.DEFAULT_SOURCE
    assert cifar.is_official(official)
    assert not cifar.is_official("http://127.0.0.1:8000/cifar-10-binary.tar.gz")
    with pytest.raises(UserError, match="MD5 mismatch.*c32a1d4ab5d03f1284b67883add8d4a3"):
        cifar.verify(official, str(archive.path), None)
    # The same bytes from elsewhere are only checked against --sha256.
    assert cifar.verify(str(archive.path), str(archive.path), None)["verified"] == "none"


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


def test_https_style_source_downloads_with_progress_and_caches(tmp_path: Path, caplog) -> None:
    archive = make_synthetic_archive(tmp_path / "www", num_train=100, num_test=20)
    handler = functools.partial(_CountingHandler, directory=str(tmp_path / "www"))
    _CountingHandler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{archive.path.name}"
        cache = tmp_path / "cache"
        with caplog.at_level(logging.INFO, logger="simclr.cifar"):
            first = prepare_data.run(
                prepare_data.PrepareDataConfig(
                    source=url, output_dir=str(tmp_path / "o1"), cache_dir=str(cache)
                )
            )
        assert any("downloaded" in r.getMessage() and "%" in r.getMessage() for r in caplog.records)
        second = prepare_data.run(
            prepare_data.PrepareDataConfig(
                source=url, output_dir=str(tmp_path / "o2"), cache_dir=str(cache)
            )
        )
        assert len(_CountingHandler.requests) == 1  # the second run used the cache
        assert first == second and first["source"]["uri"] == url
        x, y = data.load_arrays(str(tmp_path / "o1"), "train")
        np.testing.assert_array_equal(x, archive.train_images)
        with pytest.raises(UserError, match="HTTP 404"):
            prepare_data.run(
                prepare_data.PrepareDataConfig(
                    source=url + ".nope", output_dir=str(tmp_path / "o3"), cache_dir=str(cache)
                )
            )
    finally:
        server.shutdown()
        server.server_close()
    assert not (tmp_path / "o3" / "manifest.json").exists()


def test_gs_source_and_gs_output(gcs_bucket: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SIMCLR_CACHE_DIR", str(tmp_path / "simclr-cache"))
    archive = make_synthetic_archive(tmp_path, layout="python", num_train=100, num_test=30, seed=2)
    source = f"{gcs_bucket}/archives/{archive.path.name}"
    storage.upload_file(str(archive.path), source)
    out = f"{gcs_bucket}/prepared"
    manifest = prepare_data.run(
        prepare_data.PrepareDataConfig(
            source=source, output_dir=out, num_shards=2, cache_dir=str(tmp_path / "cache")
        )
    )
    listed = storage.list_files(out)
    assert "manifest.json" in listed and set(manifest["splits"]["train"]["files"]) <= set(listed)
    assert data.load_manifest(out) == manifest
    x, y = data.load_arrays(out, "test")
    np.testing.assert_array_equal(x, archive.test_images)
    np.testing.assert_array_equal(y, archive.test_labels)
    local = data.local_data_dir(out)
    assert local.startswith(str(tmp_path / "simclr-cache"))
    assert sorted(os.listdir(local)) == listed
    with pytest.raises(UserError, match="not found"):
        prepare_data.run(
            prepare_data.PrepareDataConfig(
                source=source + "x", output_dir=out + "2", cache_dir=str(tmp_path / "c2")
            )
        )
    assert not storage.exists(f"{out}2/manifest.json")


def test_bench_row_for_a_given_archive(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from simclr.bench import prepare

    archive = make_synthetic_archive(tmp_path, num_train=60, num_test=20)
    (row,) = prepare.benchmarks(SimpleNamespace(cifar10_source=str(archive.path)))
    assert row["name"] == "prepare_data_seconds" and row["unit"] == "s"
    assert row["value"] > 0 and row["num_examples"] == 80 and row["archive"] == str(archive.path)
