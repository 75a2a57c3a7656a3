"""simclr.images sources: detection, ImageFolder layouts, CSV/JSONL lists, gs:// and s3://."""

from __future__ import annotations

from pathlib import Path

import pytest
from simclr import storage
from simclr.errors import UserError
from simclr.images import (
    CIFAR_ARCHIVE,
    IMAGE_FOLDER,
    IMAGE_LIST,
    detect_source_kind,
    list_source,
)

from tests.fixtures_images import (
    cifar_jpegs,
    write_class_folders,
    write_csv_list,
    write_flat_folder,
    write_jsonl_list,
)


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", CIFAR_ARCHIVE),
        ("http://mirror/x", CIFAR_ARCHIVE),
        ("/data/cifar-10-python.tar.gz", CIFAR_ARCHIVE),
        ("gs://b/c/cifar.TGZ", CIFAR_ARCHIVE),
        ("s3://b/archive.tar", CIFAR_ARCHIVE),
        ("gs://b/photos", IMAGE_FOLDER),
        ("s3://b/photos/", IMAGE_FOLDER),
        ("/data/photos", IMAGE_FOLDER),
        ("gs://b/list.csv", IMAGE_LIST),
        ("s3://b/x/list.JSONL", IMAGE_LIST),
        ("/data/list.ndjson", IMAGE_LIST),
        ("file:///data/list.csv", IMAGE_LIST),
    ],
)
def test_detect_source_kind(source: str, kind: str) -> None:
    assert detect_source_kind(source) == kind


def test_a_local_directory_is_a_folder_whatever_its_name(tmp_path: Path) -> None:
    (tmp_path / "odd.csv").mkdir()
    assert detect_source_kind(str(tmp_path / "odd.csv")) == IMAGE_FOLDER
    with pytest.raises(UserError, match="unsupported URI scheme 's3a://'"):
        detect_source_kind("s3a://b/photos")
    with pytest.raises(UserError, match="--source is empty"):
        detect_source_kind(" ")


def _class_tree(root: Path) -> dict[str, int]:
    jpegs = cifar_jpegs()
    chosen = [f for f in jpegs.per_class(3) if f[1] in (0, 1, 3)]  # airplane, automobile, cat
    labels = write_class_folders(root, chosen, jpegs.classes)
    (root / "cat" / "deeper" / "more").mkdir(parents=True, exist_ok=True)
    fourth_cat = [f for f in jpegs.per_class(4) if f[1] == 3][-1]
    (root / "cat" / "deeper" / "more" / "NESTED.JPG").write_bytes(fourth_cat[2])
    (root / "README.md").write_text("about these pictures")
    (root / "cat" / "notes.txt").write_text("x")
    (root / ".DS_Store").write_bytes(b"\0")
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "x.jpg").write_bytes(b"x")
    (root / "stray.png").write_bytes(b"x")
    return labels


def test_class_folders_are_labels(tmp_path: Path) -> None:
    _class_tree(tmp_path)
    listing = list_source(str(tmp_path))
    assert listing.layout == "class_folders" and listing.labelled
    assert listing.class_names == ["airplane", "automobile", "cat"]  # sorted folder names
    paths = [f.path for f in listing.files]
    assert paths == sorted(paths)
    assert "cat/deeper/more/NESTED.JPG" in paths  # recursive, extension case-insensitive
    for f in listing.files:
        assert listing.class_names[f.label] == f.path.split("/")[0]
        assert f.uri == str(tmp_path / f.path)
    assert listing.outside_classes == ["stray.png"]  # beside the class folders
    assert listing.ignored == {".md": 1, ".txt": 1, "(hidden)": 2}


def test_flat_folder_is_unlabelled_and_folder_labels_off_is_recursive(tmp_path: Path) -> None:
    rels = write_flat_folder(tmp_path / "flat", cifar_jpegs().files[:5])
    flat = list_source(str(tmp_path / "flat"))
    assert flat.layout == "flat" and not flat.labelled and flat.class_names == []
    assert [f.path for f in flat.files] == rels and {f.label for f in flat.files} == {-1}
    _class_tree(tmp_path / "tree")
    unlabelled = list_source(str(tmp_path / "tree"), folder_labels=False)
    assert not unlabelled.labelled and unlabelled.outside_classes == []
    assert len(unlabelled.files) == 11  # 9 + nested + stray


def test_empty_or_missing_folders_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file or folder"):
        list_source(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no files"):
        list_source(str(tmp_path / "empty"))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    with pytest.raises(UserError, match=r"no JPEG, PNG, WebP or BMP files .*1 \.txt"):
        list_source(str(tmp_path / "docs"))


def test_csv_list_relative_absolute_header_and_numeric_labels(tmp_path: Path) -> None:
    files = cifar_jpegs().files[:4]
    (tmp_path / "img").mkdir()
    for index, _, data in files:
        (tmp_path / "img" / f"{index}.jpg").write_bytes(data)
    absolute = str(tmp_path / "img" / f"{files[3][0]}.jpg")
    rows = [("img/0.jpg", "10"), ("./img/1.jpg", "2"), ("img/sub/../2.jpg", "0"), (absolute, "2")]
    listing = list_source(str(write_csv_list(tmp_path / "list.csv", rows)))
    assert listing.layout == "csv" and listing.class_names == ["0", "2", "10"]  # numeric order
    by_path = {f.path: f for f in listing.files}
    assert by_path["img/0.jpg"].label == 2 and by_path["./img/1.jpg"].label == 1
    assert by_path["img/sub/../2.jpg"].uri == str(tmp_path / "img" / "2.jpg")
    assert by_path[absolute].uri == absolute
    headerless = list_source(str(write_csv_list(tmp_path / "b.csv", rows, header=False)))
    assert [f.uri for f in headerless.files] == [f.uri for f in listing.files]


def test_jsonl_list_with_string_and_integer_labels(tmp_path: Path) -> None:
    rows = [("b.jpg", "dog"), ("a.jpg", "cat"), ("c.jpg", "cat")]
    listing = list_source(str(write_jsonl_list(tmp_path / "l.jsonl", rows)))
    assert listing.class_names == ["cat", "dog"]
    assert [(f.path, f.label) for f in listing.files] == [("a.jpg", 0), ("b.jpg", 1), ("c.jpg", 0)]
    ints = list_source(str(write_jsonl_list(tmp_path / "i.jsonl", [("x.png", 1), ("y.png", 0)])))
    assert ints.class_names == ["0", "1"] and [f.label for f in ints.files] == [1, 0]
    unlabelled = list_source(str(write_jsonl_list(tmp_path / "u.jsonl", [("x.png", None)])))
    assert not unlabelled.labelled and unlabelled.files[0].label == -1


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("mixed.csv", "a.jpg,cat\nb.jpg\n", "line 2 has no label but line 1 has one"),
        ("wide.csv", "a.jpg,cat,extra\n", r"line 1: expected path\[,label\]"),
        ("twice.csv", "a.jpg,cat\nb.jpg,dog\na.jpg,dog\n", "listed with two labels"),
        ("bad.jsonl", '{"path": "a.jpg"}\nnot json\n', "line 2: not JSON"),
        ("nopath.jsonl", '{"file": "a.jpg"}\n', 'line 1: expected {"path"'),
        ("empty.csv", "path,label\n\n", "lists no images"),
        ("scheme.csv", "az://c/a.jpg\n", "unsupported URI scheme 'az://'"),
    ],
)
def test_bad_lists_are_one_line_errors(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(UserError, match=message):
        list_source(str(tmp_path / name))


def test_a_file_listed_twice_with_one_label_is_kept_once(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("a.jpg,cat\n./a.jpg,cat\nb.jpg,dog\n")
    listing = list_source(str(tmp_path / "l.csv"))
    assert [f.path for f in listing.files] == ["./a.jpg", "b.jpg"]
    assert listing.repeated_rows == [("a.jpg", "./a.jpg")]


def test_folder_on_gcs_and_list_on_s3_naming_both_stores(
    tmp_path: Path, gcs_bucket: str, s3_bucket: str
) -> None:
    labels = write_class_folders(
        tmp_path / "src", cifar_jpegs().per_class(2), cifar_jpegs().classes
    )
    storage.upload_dir(str(tmp_path / "src"), f"{gcs_bucket}/photos")
    storage.write_bytes(f"{gcs_bucket}/photos/.hidden/x.jpg", b"x")
    listing = list_source(f"{gcs_bucket}/photos/")
    assert listing.class_names == sorted({p.split("/")[0] for p in labels})
    assert {f.path: listing.class_names[f.label] for f in listing.files} == {
        p: cifar_jpegs().classes[label] for p, label in labels.items()
    }
    assert all(f.uri == f"{gcs_bucket}/photos/{f.path}" for f in listing.files)
    assert listing.ignored == {"(hidden)": 1}

    first, second = sorted(labels)[:2]
    storage.write_bytes(f"{s3_bucket}/lists/img/one.jpg", (tmp_path / "src" / first).read_bytes())
    rows = "path,label\nimg/one.jpg,a\n" + f"{gcs_bucket}/photos/{second},b\n"
    storage.write_text(f"{s3_bucket}/lists/l.csv", rows)
    remote = list_source(f"{s3_bucket}/lists/l.csv")
    assert [f.uri for f in remote.files] == [
        f"{gcs_bucket}/photos/{second}",
        f"{s3_bucket}/lists/img/one.jpg",
    ]
    storage.write_text(f"{s3_bucket}/lists/up.csv", "../../x.jpg\n")
    with pytest.raises(UserError, match="climbs above the bucket"):
        list_source(f"{s3_bucket}/lists/up.csv")
