"""prepare_data on your own images, through the CLI: real CIFAR-10 JPEG files from
../shared/data laid out as class subfolders, a flat folder and a manifest; gs:// and
s3:// prefixes (the suite's GCS emulator and S3 server); the archive path untouched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from simclr import data, storage
from simclr.tasks import prepare_data

from tests.fixtures_data import make_synthetic_archive, prepare_data_cli
from tests.fixtures_images import (
    cifar_jpegs,
    write_class_folders,
    write_csv_list,
    write_flat_folder,
    write_jsonl_list,
)

REPO = Path(__file__).resolve().parents[1]
PER_CLASS = 6  # 60 real CIFAR-10 JPEGs


def _ok(*args: str) -> dict:
    result = prepare_data_cli(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    out = [a.split("=", 1)[1] for a in args if a.startswith("--output_dir=")][0]
    return storage.read_json(storage.join(out, "manifest.json"))


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("sources")
    jpegs = cifar_jpegs()
    images = jpegs.per_class(PER_CLASS)
    labels = write_class_folders(root / "classes", images, jpegs.classes)
    write_flat_folder(root / "flat", images)
    rows = sorted(labels.items())
    write_csv_list(root / "classes" / "list.csv", [(p, jpegs.classes[y]) for p, y in rows])
    write_jsonl_list(root / "classes" / "list.jsonl", [(p, None) for p, _ in rows])
    return {"root": root, "classes": jpegs.classes, "labels": labels}


def test_class_folders_are_labels_with_a_stratified_test_split(folders, tmp_path) -> None:
    out = tmp_path / "data"
    manifest = _ok(
        f"--source={folders['root'] / 'classes'}",
        f"--output_dir={out}",
        "--test_fraction=0.2",
        "--label_fractions=0.5",
        "--seed=3",
    )
    assert manifest["format_version"] == 2 and manifest["labelled"] is True
    assert manifest["class_names"] == sorted(folders["classes"])
    assert manifest["image_size"] == 32 and manifest["stored_size"] == 32
    # stratified: 20% of 6 per class, rounded up overall (12), 1-2 per class, none missing
    test_counts = manifest["splits"]["test"]["class_counts"]
    assert sum(test_counts) == 12 and min(test_counts) >= 1
    assert sum(manifest["splits"]["train"]["class_counts"]) == 48
    assert manifest["ingest"]["test_fraction"] == 0.2 and manifest["seed"] == 3
    assert list(manifest["label_subsets"]) == ["0.5"]
    # the reader every task uses accepts it, and decodes 32x32 pictures with their labels
    assert data.is_labelled(data.load_manifest(str(out)))
    x, y = data.load_arrays(str(out), "test")
    assert x.shape == (12, 32, 32, 3) and x.dtype == np.uint8
    assert np.bincount(y, minlength=10).tolist() == test_counts


def test_flat_folder_and_lists_unlabelled_and_labelled(folders, tmp_path) -> None:
    flat = _ok(f"--source={folders['root'] / 'flat'}", f"--output_dir={tmp_path / 'flat'}")
    assert flat["labelled"] is False and flat["class_names"] == []
    assert flat["label_subsets"] == {} and flat["splits"]["train"]["class_counts"] == []
    assert not data.is_labelled(data.load_manifest(str(tmp_path / "flat")))
    assert flat["splits"]["test"]["num_examples"] == 6  # default --test_fraction 0.1 of 60
    csv = _ok(
        f"--source={folders['root'] / 'classes' / 'list.csv'}",
        f"--output_dir={tmp_path / 'csv'}",
        "--test_fraction=0",
    )
    assert csv["labelled"] and csv["source"]["layout"] == "csv"
    assert (
        csv["splits"]["train"]["class_counts"] == [PER_CLASS] * 10 and "test" not in csv["splits"]
    )
    jsonl = _ok(
        f"--source={folders['root'] / 'classes' / 'list.jsonl'}",
        f"--output_dir={tmp_path / 'jsonl'}",
    )
    assert jsonl["labelled"] is False and jsonl["source"]["layout"] == "jsonl"


def test_resolution_flags_and_bad_images_through_theprepare_data_cli(folders, tmp_path) -> None:
    src = tmp_path / "src"
    write_flat_folder(src, cifar_jpegs().files[:20])
    (src / "broken.jpg").write_bytes(b"not a picture at all" * 10)
    manifest = _ok(f"--source={src}", f"--output_dir={tmp_path / 'a'}", "--image_size=48")
    assert manifest["image_size"] == 48 and manifest["stored_size"] == 55  # round(48/0.875)
    assert [s["path"] for s in manifest["skipped"]] == ["broken.jpg"]
    x, _ = data.load_arrays(str(tmp_path / "a"), "train")
    assert x.shape[1:] == (48, 48, 3)  # centre crop of the stored picture
    fail = prepare_data_cli(
        f"--source={src}", f"--output_dir={tmp_path / 'b'}", "--on_bad_image=fail"
    )
    assert fail.returncode == 2 and fail.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "broken.jpg" in fail.stderr and not (tmp_path / "b" / "manifest.json").exists()
    for args, message in [
        (["--stored_size=16", "--image_size=32"], "--stored_size 16 is below --image_size 32"),
        (["--on_bad_image=maybe"], "on_bad_image"),
        (["--test_fraction=1.5"], "test_fraction"),
    ]:
        bad = prepare_data_cli(f"--source={src}", f"--output_dir={tmp_path / 'c'}", *args)
        assert bad.returncode != 0 and message in bad.stderr, bad.stderr[-500:]
        assert "Traceback" not in bad.stderr


def test_archive_path_is_unchanged_and_refuses_other_sizes(tmp_path) -> None:
    archive = make_synthetic_archive(tmp_path, num_train=40, num_test=20, seed=1)
    manifest = _ok(f"--source={archive.path}", f"--output_dir={tmp_path / 'd'}")
    assert manifest["format_version"] == 1 and manifest["image_format"] == "raw_uint8"
    assert len(manifest["splits"]["train"]["files"]) == prepare_data.CIFAR_NUM_SHARDS
    assert "labelled" not in manifest and data.is_labelled(manifest)
    bad = prepare_data_cli(
        f"--source={archive.path}", f"--output_dir={tmp_path / 'e'}", "--image_size=64"
    )
    assert bad.returncode == 2 and "holds 32x32 images" in bad.stderr


def test_gcs_and_s3_prefixes(folders, tmp_path, gcs_bucket, s3_bucket) -> None:
    storage.upload_dir(str(folders["root"] / "classes"), f"{gcs_bucket}/photos")
    storage.upload_dir(str(folders["root"] / "flat"), f"{s3_bucket}/flat")
    on_gcs = _ok(
        f"--source={gcs_bucket}/photos", f"--output_dir={s3_bucket}/from-gcs", "--test_fraction=0.2"
    )
    assert on_gcs["labelled"] and on_gcs["counts"]["images"] == 10 * PER_CLASS
    on_s3 = _ok(f"--source={s3_bucket}/flat/", f"--output_dir={gcs_bucket}/from-s3")
    assert not on_s3["labelled"] and on_s3["counts"]["images"] == 10 * PER_CLASS
    x, _ = data.load_arrays(f"{gcs_bucket}/from-s3", "test")
    assert x.shape == (6, 32, 32, 3)
    manifest_text = storage.read_bytes(f"{s3_bucket}/from-gcs/manifest.json")
    assert json.loads(manifest_text)["source"]["uri"] == f"{gcs_bucket}/photos"
