"""ingest_images end to end on real pictures: layouts, bad files, duplicates, splits,
determinism, fail = nothing published, gs:// and s3://, larger photos at 96 px."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from simclr import storage
from simclr.errors import UserError
from simclr.images import IngestOptions, ingest, ingest_images
from simclr.images.manifest import auto_num_shards
from simclr.images.splits import split_order

from tests.fixtures_images import (
    bad_files,
    cifar_jpegs,
    jpeg_bytes,
    jpeg_with_orientation,
    png16,
    png_bytes,
    skimage_photos,
    write_class_folders,
    write_csv_list,
    write_flat_folder,
    write_jsonl_list,
)

CLASS_SIZES = {"airplane": 40, "automobile": 25, "bird": 12, "cat": 8}
BAD_PLACES = {  # bad file -> where it goes in the class tree
    "empty.jpg": "bird/empty.jpg",
    "notes.jpg": "airplane/notes.jpg",
    "animation.png": "cat/animation.png",
    "truncated.jpg": "automobile/truncated.jpg",
    "bomb.png": "airplane/zz/bomb.png",
}


def _records(data_dir: str, files: list[str]) -> list[dict]:
    import tensorflow as tf
    from simclr.images.parsing import parse_features

    out = []
    paths = [os.path.join(data_dir, f) for f in files]
    for batch in tf.data.TFRecordDataset(paths).batch(256):
        parsed = tf.io.parse_example(batch, parse_features())
        for i in range(len(parsed["label"])):
            out.append({key: parsed[key][i].numpy() for key in parsed})
    return out


def _build_tree(root: Path, with_stray: bool = True) -> dict:
    jpegs = cifar_jpegs()
    chosen, taken = [], {name: 0 for name in CLASS_SIZES}
    for index, label, data in jpegs.files:
        name = jpegs.classes[label]
        if name in CLASS_SIZES and taken[name] < CLASS_SIZES[name]:
            taken[name] += 1
            chosen.append((index, label, data))
    labels = write_class_folders(root, chosen, jpegs.classes)
    for name, (data, _) in bad_files().items():
        target = root / BAD_PLACES[name]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    first = sorted(p for p in labels if p.startswith("cat/"))[0]
    shutil.copy(root / first, root / "cat" / "zz_copy.jpg")  # a duplicate, later in order
    (root / "airplane" / "info.txt").write_text("not a picture")
    if with_stray:
        shutil.copy(root / first, root / "stray.jpg")
    return {"labels": labels, "duplicate_of": first}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("tree") / "photos"
    info = _build_tree(root)
    out = tmp_path_factory.mktemp("out") / "data"
    options = IngestOptions(image_size=32, test_fraction=0.2, label_fractions=(0.1, 0.5), workers=2)
    run = ingest(str(root), str(out), options)
    return {"root": root, "out": out, "run": run, "options": options, **info}


def test_manifest_layout_and_account_of_every_file(tree: dict) -> None:
    manifest = tree["run"].manifest
    on_disk = json.loads((tree["out"] / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["format_version"] == 2 and manifest["labelled"] is True
    assert manifest["class_names"] == sorted(CLASS_SIZES)
    assert manifest["image_format"] == "png" and manifest["image_size"] == 32
    assert manifest["stored_size"] == 32
    skipped = {s["path"]: s["kind"] for s in manifest["skipped"]}
    expected = {place: bad_files()[name][1] for name, place in BAD_PLACES.items()}
    assert skipped == {**expected, "stray.jpg": "outside_class_folder"}
    assert all(s["reason"] for s in manifest["skipped"])
    assert manifest["duplicates"] == [
        {"path": "cat/zz_copy.jpg", "duplicate_of": tree["duplicate_of"]}
    ]
    kept = sum(CLASS_SIZES.values())
    counts = manifest["counts"]
    assert counts["images"] == kept and counts["skipped"] == 6 and counts["duplicates"] == 1
    assert counts["ignored"] == 1 and manifest["source"]["ignored"]["by_extension"] == {".txt": 1}
    assert manifest["source"]["kind"] == "image_folder"
    assert manifest["source"]["layout"] == "class_folders"
    assert len(manifest["source"]["sha256"]) == 64
    assert set(os.listdir(tree["out"])) == {
        *manifest["splits"]["train"]["files"],
        *manifest["splits"]["test"]["files"],
        *(s["file"] for s in manifest["label_subsets"].values()),
        "manifest.json",
    }


def test_splits_are_stratified_disjoint_and_shuffled(tree: dict) -> None:
    manifest, out = tree["run"].manifest, str(tree["out"])
    kept = sum(CLASS_SIZES.values())
    train = _records(out, manifest["splits"]["train"]["files"])
    test = _records(out, manifest["splits"]["test"]["files"])
    assert len(test) == math.ceil(0.2 * kept) and len(train) + len(test) == kept
    train_paths = {r["path"].decode() for r in train}
    test_paths = {r["path"].decode() for r in test}
    assert not train_paths & test_paths
    assert train_paths | test_paths == set(tree["labels"])
    sizes = [CLASS_SIZES[name] for name in manifest["class_names"]]
    test_counts = manifest["splits"]["test"]["class_counts"]
    assert sum(test_counts) == len(test)
    for count, size in zip(test_counts, sizes, strict=True):
        assert abs(count - 0.2 * size) <= 1  # stratified
    labels = [int(r["label"]) for r in train]
    assert manifest["splits"]["train"]["class_counts"] == np.bincount(labels).tolist()
    assert labels != sorted(labels)  # records are not grouped by class


def test_records_hold_the_pictures_labels_sizes_and_paths(tree: dict) -> None:
    import tensorflow as tf

    manifest, out = tree["run"].manifest, str(tree["out"])
    records = _records(out, manifest["splits"]["train"]["files"])
    for record in records[:40]:
        path = record["path"].decode()
        assert manifest["class_names"][record["label"]] == path.split("/")[0]
        image = tf.io.decode_png(record["image"], channels=3).numpy()
        assert image.shape == (record["height"], record["width"], 3) == (32, 32, 3)
        source = np.asarray(Image.open(tree["root"] / path).convert("RGB"))
        np.testing.assert_array_equal(image, source)  # lossless at 32 px


def test_label_subsets_are_class_balanced_subsets_of_train(tree: dict) -> None:
    manifest, out = tree["run"].manifest, str(tree["out"])
    train_paths = {r["path"].decode() for r in _records(out, manifest["splits"]["train"]["files"])}
    n_train = manifest["splits"]["train"]["num_examples"]
    smallest = min(manifest["splits"]["train"]["class_counts"])
    for key, fraction in (("0.1", 0.1), ("0.5", 0.5)):
        entry = manifest["label_subsets"][key]
        per_class = min(max(1, round(fraction * n_train / 4)), smallest)
        assert entry["class_counts"] == [per_class] * 4
        subset = _records(out, [entry["file"]])
        assert {r["path"].decode() for r in subset} <= train_paths
        assert len(subset) == entry["num_examples"] == 4 * per_class


def test_the_same_input_gives_the_same_bytes_whatever_the_workers(
    tree: dict, tmp_path: Path
) -> None:
    assert tree["run"].stats.worker_processes == 2  # the first run converted in 2 processes
    again = ingest(str(tree["root"]), str(tmp_path / "again"), _with(tree["options"], workers=1))
    assert again.stats.worker_processes == 1
    names = sorted(os.listdir(tree["out"]))
    assert names == sorted(os.listdir(tmp_path / "again"))
    for name in names:
        assert (tree["out"] / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    other_seed = ingest_images(
        str(tree["root"]), str(tmp_path / "s1"), _with(tree["options"], seed=1)
    )
    assert (
        other_seed["splits"]["test"]["shards"] != tree["run"].manifest["splits"]["test"]["shards"]
    )


def _with(options: IngestOptions, **changes) -> IngestOptions:
    import dataclasses

    return dataclasses.replace(options, **changes)


def test_fail_names_the_first_bad_file_and_publishes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    _build_tree(root)
    options = IngestOptions(image_size=32, on_bad_image="fail", workers=1)
    out = tmp_path / "out" / "data"
    with pytest.raises(UserError, match=r"stray\.jpg: an image beside the class folders"):
        ingest_images(str(root), str(out), options)
    (root / "stray.jpg").unlink()
    with pytest.raises(UserError) as err:
        ingest_images(str(root), str(out), options)
    first_bad = sorted(BAD_PLACES.values())[0]  # airplane/notes.jpg, in sorted order
    assert f"{root / first_bad}: not an image" in str(err.value)
    assert "--on_bad_image=fail" in str(err.value) and "\n" not in str(err.value)
    assert not out.exists() and os.listdir(out.parent) == []  # no staging left either


def test_a_class_whose_every_file_is_bad_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    write_class_folders(root, cifar_jpegs().per_class(3), cifar_jpegs().classes)
    for bad in (root / "truck").iterdir():
        bad.write_bytes(b"")
    with pytest.raises(UserError, match="class 'truck' has no usable image"):
        ingest_images(str(root), str(tmp_path / "out"), IngestOptions(image_size=32, workers=1))


def test_flat_folder_csv_and_jsonl_sources(tmp_path: Path) -> None:
    jpegs = cifar_jpegs()
    images = jpegs.per_class(6)
    write_flat_folder(tmp_path / "flat", images)
    options = IngestOptions(image_size=32, workers=1, test_fraction=0.2)
    flat = ingest_images(str(tmp_path / "flat"), str(tmp_path / "o_flat"), options)
    assert flat["labelled"] is False and flat["class_names"] == []
    assert flat["label_subsets"] == {} and flat["splits"]["test"]["num_examples"] == 12
    assert flat["splits"]["train"]["class_counts"] == []
    records = _records(str(tmp_path / "o_flat"), flat["splits"]["train"]["files"])
    assert {int(r["label"]) for r in records} == {-1}

    rows = [(f"flat/{index:05d}.jpg", jpegs.classes[label]) for index, label, _ in images]
    csv_list = write_csv_list(tmp_path / "list.csv", rows)
    labelled = ingest_images(str(csv_list), str(tmp_path / "o_csv"), options)
    assert labelled["source"]["layout"] == "csv" and labelled["class_names"] == jpegs.classes
    by_path = {
        r["path"].decode(): r
        for split in ("train", "test")
        for r in _records(str(tmp_path / "o_csv"), labelled["splits"][split]["files"])
    }
    assert set(by_path) == {p for p, _ in rows}
    for path, name in rows:
        assert labelled["class_names"][by_path[path]["label"]] == name

    jsonl = write_jsonl_list(tmp_path / "list.jsonl", [(p, None) for p, _ in rows])
    unlabelled = ingest_images(str(jsonl), str(tmp_path / "o_jsonl"), options)
    assert unlabelled["labelled"] is False and unlabelled["source"]["layout"] == "jsonl"
    flat_images = {
        r["path"].decode(): r["image"]
        for split in ("train", "test")
        for r in _records(str(tmp_path / "o_flat"), flat["splits"][split]["files"])
    }
    for path, record in by_path.items():  # the list and the folder store the same pictures
        assert flat_images[path.removeprefix("flat/")] == record["image"]


def test_photos_at_96_px_every_mode_and_an_exif_rotation(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    for name, path in skimage_photos().items():
        shutil.copy(path, root / name)
    astronaut = Image.open(skimage_photos()["astronaut.png"]).convert("RGB")
    (root / "wide.jpg").write_bytes(jpeg_bytes(astronaut.resize((900, 200))))
    (root / "tall.png").write_bytes(png_bytes(astronaut.resize((97, 301))))
    (root / "rotated.jpg").write_bytes(jpeg_with_orientation(astronaut.resize((300, 200)), 6))
    (root / "cmyk.jpg").write_bytes(jpeg_bytes(astronaut.convert("CMYK")))
    (root / "grey16.png").write_bytes(png16(np.full((150, 120), 40000, np.uint16)))
    (root / "palette.png").write_bytes(png_bytes(astronaut.convert("P"), transparency=0))
    (root / "odd.webp").write_bytes(_webp(astronaut.resize((333, 129))))
    options = IngestOptions(image_size=96, workers=2, test_fraction=0.25)
    run = ingest(str(root), str(tmp_path / "out"), options)
    manifest = run.manifest
    assert manifest["image_format"] == "jpeg" and manifest["stored_size"] == 110
    assert manifest["counts"]["images"] == len(os.listdir(root)) and not manifest["skipped"]
    assert manifest["counts"]["rotated"] == 1
    modes = manifest["counts"]["source_modes"]
    assert {"CMYK", "I;16", "P", "RGBA", "L", "RGB"} <= set(modes), modes
    assert manifest["counts"]["resized"]["up"] >= 2  # microaneurysms 102 px, tall 97 px
    records = {
        r["path"].decode(): r
        for split in ("train", "test")
        for r in _records(str(tmp_path / "out"), manifest["splits"][split]["files"])
    }
    for path, record in records.items():
        assert min(record["height"], record["width"]) == 110, path
        assert Image.open(__import__("io").BytesIO(record["image"])).format == "JPEG"
    assert (records["rotated.jpg"]["width"], records["rotated.jpg"]["height"]) == (110, 165)
    assert (records["wide.jpg"]["width"], records["wide.jpg"]["height"]) == (495, 110)


def _webp(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=90)
    return buffer.getvalue()


def test_gcs_source_to_s3_output_and_fail_publishes_nothing_remotely(
    tmp_path: Path, gcs_bucket: str, s3_bucket: str
) -> None:
    jpegs = cifar_jpegs()
    write_class_folders(tmp_path / "src", jpegs.per_class(4), jpegs.classes)
    storage.upload_dir(str(tmp_path / "src"), f"{gcs_bucket}/photos")
    options = IngestOptions(image_size=32, workers=1, test_fraction=0.25, label_fractions=(0.1,))
    manifest = ingest_images(f"{gcs_bucket}/photos", f"{s3_bucket}/data", options)
    assert storage.read_json(f"{s3_bucket}/data/manifest.json") == manifest
    assert manifest["counts"]["images"] == 40 and manifest["class_names"] == jpegs.classes
    listed = set(storage.list_files(f"{s3_bucket}/data"))
    assert set(manifest["splits"]["train"]["files"]) <= listed
    local = ingest_images(str(tmp_path / "src"), str(tmp_path / "local"), options)
    for split in ("train", "test"):  # the same pictures whichever store they come from
        assert [s["sha256"] for s in manifest["splits"][split]["shards"]] == [
            s["sha256"] for s in local["splits"][split]["shards"]
        ]
    storage.write_bytes(f"{gcs_bucket}/photos/cat/zz.jpg", b"")
    with pytest.raises(UserError, match=r"photos/cat/zz\.jpg: zero bytes"):
        ingest_images(
            f"{gcs_bucket}/photos", f"{gcs_bucket}/failed", _with(options, on_bad_image="fail")
        )
    assert storage.list_files(f"{gcs_bucket}/failed") == []


def test_progress_lines_have_count_rate_and_eta(tmp_path: Path, caplog) -> None:
    write_flat_folder(tmp_path / "flat", cifar_jpegs().files[:40])
    (tmp_path / "flat" / "bad.jpg").write_bytes(b"nope")
    caplog.set_level(logging.INFO, logger="simclr.images")
    ingest_images(
        str(tmp_path / "flat"),
        str(tmp_path / "out"),
        IngestOptions(image_size=32, workers=1, progress_every_s=0, test_fraction=0),
    )
    lines = [r.getMessage() for r in caplog.records]
    progress = [line for line in lines if "files/s, ETA" in line]
    assert any("/41 files (" in line for line in progress)
    assert any(
        "41/41 files (100.0%)" in line and "1 skipped (1 not_image)" in line for line in progress
    )
    assert any("images/s" in line and "worker processes" in line for line in lines)


def test_stratified_split_rules() -> None:
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    train, test = split_order(labels, 3, 0.1, seed=0)
    assert np.bincount(labels[test]).tolist() == [5, 3, 2]
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(100))
    again = split_order(labels, 3, 0.1, seed=0)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)
    order, none = split_order(labels, 3, 0.0, seed=0)
    assert len(none) == 0 and sorted(order.tolist()) == list(range(100))
    with pytest.raises(UserError, match="class 2 has 1 usable image"):
        split_order(np.array([0, 0, 1, 1, 2]), 3, 0.5, seed=0)
    with pytest.raises(UserError, match="each split needs at least one image of each"):
        split_order(labels, 3, 0.01, seed=0)


def test_auto_shards_follow_the_tfrecord_guide() -> None:
    mib = 1 << 20
    assert auto_num_shards(6 * mib, 2000) == 1  # under 10 MiB: one file
    assert auto_num_shards(160 * mib, 50_000) == 16  # 16 files of 10 MiB
    assert auto_num_shards(50 * 1024 * mib, 1_000_000) == 400  # 128 MiB each
    assert auto_num_shards(500 * mib, 3) == 3  # never more shards than examples


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_size": 0}, "--image_size must be >= 1"),
        ({"stored_size": 16}, "--stored_size 16 is below --image_size 32"),
        ({"image_format": "gif"}, "--image_format must be one of auto, jpeg, png, got 'gif'"),
        ({"test_fraction": 1.0}, "--test_fraction must be < 1, got 1"),
        ({"on_bad_image": "ignore"}, "--on_bad_image must be one of skip, fail"),
        ({"label_fractions": (0.0,)}, "--label_fractions must be > 0, got 0"),
        ({"seed": -1}, "--seed must be >= 0, got -1"),
        ({"jpeg_quality": 101}, "--jpeg_quality must be <= 100, got 101"),
    ],
)
def test_bad_options_are_one_line_errors(changes: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        _with(IngestOptions(image_size=32), **changes).resolved()
