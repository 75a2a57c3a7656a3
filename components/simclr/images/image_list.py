"""A CSV or JSONL file listing images: `path[,label]`.

    path,label                       {"path": "cats/001.jpg", "label": "cat"}
    cats/001.jpg,cat                 {"path": "gs://b/x/002.png", "label": "dog"}
    gs://b/x/002.png,dog             {"path": "003.webp"}          (unlabelled list)

- CSV (`.csv`): one or two columns; a first row whose first cell is `path` (any case)
  is a header. JSONL (`.jsonl`, `.ndjson`): one object per line with `path` and an
  optional `label` (string or integer). Blank lines are skipped.
- A path is relative to the list's own location (folder or prefix; `..` may not climb
  above a bucket), or absolute: `/...`, `file://...`, `gs://...`, `s3://...` (any store,
  whatever store the list is on).
- Labels: every row has one, or none does (a list mixing both is refused: evaluate
  partly labelled data with `--eval_source`). Class names are the sorted distinct labels;
  when every label is a non-negative integer they sort numerically (0, 1, 2, ..., 10), so
  contiguous integer labels keep their values as class indices.
- The files are sorted by path whatever the row order, so the same rows in another
  order ingest to the same records. A file named twice with the same label is kept
  once (the repeat is counted as a duplicate); with two different labels it is an error.
- Extensions are not filtered (the user named these files): the decoder decides, so a
  listed GIF is skipped as "a GIF file".
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
import re
from typing import Any

from simclr import storage
from simclr.errors import UserError
from simclr.images.sources import IMAGE_LIST, UNLABELLED, ImageFile, SourceListing

_INTEGER = re.compile(r"^[0-9]+$")


def _rows_csv(uri: str, text: str) -> list[tuple[int, str, str | None]]:
    rows = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if not rows and number == 1 and cells[0].lower() == "path":
            continue  # header
        if len(cells) > 2:
            raise UserError(f"--source {uri}: line {number}: expected path[,label], got {row!r}")
        path = cells[0]
        label = cells[1] if len(cells) == 2 and cells[1] != "" else None
        rows.append((number, path, label))
    return rows


def _rows_jsonl(uri: str, text: str) -> list[tuple[int, str, str | None]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj: Any = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"--source {uri}: line {number}: not JSON ({err.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("path"), str):
            raise UserError(f'--source {uri}: line {number}: expected {{"path": "...", ...}}')
        label = obj.get("label")
        if label is not None and (isinstance(label, bool) or not isinstance(label, (str, int))):
            raise UserError(f"--source {uri}: line {number}: label must be a string or an integer")
        text_label = None if label is None or str(label).strip() == "" else str(label).strip()
        rows.append((number, obj["path"].strip(), text_label))
    return rows


def _base(uri: str) -> str:
    """The folder or prefix the list lives in."""
    if storage.is_remote(uri):
        return uri.rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(storage.local_path(uri)))


def resolve(list_uri: str, path: str, number: int) -> str:
    """The URI a row's path names (see the module docstring)."""
    if not path:
        raise UserError(f"--source {list_uri}: line {number}: empty path")
    if "://" in path:
        storage.scheme(path)  # refuses unsupported schemes
        return path
    if path.startswith("/"):
        return path
    base = _base(list_uri)
    if storage.is_remote(base):
        bucket_root = "/".join(base.split("/", 3)[:3])  # scheme://bucket
        key = posixpath.normpath(posixpath.join(base[len(bucket_root) :].lstrip("/"), path))
        if key == ".." or key.startswith("../"):
            raise UserError(f"--source {list_uri}: line {number}: {path} climbs above the bucket")
        return f"{bucket_root}/{key}"
    return os.path.normpath(os.path.join(base, path))


def _class_names(labels: set[str]) -> list[str]:
    if labels and all(_INTEGER.match(label) for label in labels):
        return [str(v) for v in sorted({int(label) for label in labels})]
    return sorted(labels)


def read_image_list(uri: str) -> SourceListing:
    if storage.is_remote(uri) or os.path.isfile(storage.local_path(uri)):
        raw = storage.read_bytes(uri)
    else:
        raise UserError(f"--source {uri}: no such file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"--source {uri}: not UTF-8 text ({err.reason})") from None
    layout = "csv" if uri.lower().endswith(".csv") else "jsonl"
    rows = (_rows_csv if layout == "csv" else _rows_jsonl)(uri, text)
    if not rows:
        raise UserError(f"--source {uri}: lists no images")
    with_label = [r for r in rows if r[2] is not None]
    if with_label and len(with_label) != len(rows):
        first_without = next(r for r in rows if r[2] is None)
        raise UserError(
            f"--source {uri}: line {first_without[0]} has no label but line "
            f"{with_label[0][0]} has one: label every row or none"
        )
    names = _class_names({r[2] for r in with_label})
    numeric = bool(names) and all(_INTEGER.match(r[2]) for r in with_label)
    index = {name: i for i, name in enumerate(names)}

    def label_index(label: str | None) -> int:
        if label is None:
            return UNLABELLED
        return index[str(int(label)) if numeric else label]

    entries = sorted(
        (
            (path, resolve(uri, path, number), label_index(label), number)
            for number, path, label in rows
        ),
        key=lambda e: (e[0], e[1]),
    )
    files: list[ImageFile] = []
    repeated: list[tuple[str, str]] = []
    first_by_uri: dict[str, tuple[str, int, int]] = {}
    for path, target, label, number in entries:
        if target in first_by_uri:
            first_path, first_label, first_number = first_by_uri[target]
            if first_label != label:
                raise UserError(
                    f"--source {uri}: {target} is listed with two labels (lines {first_number} "
                    f"and {number})"
                )
            repeated.append((path, first_path))
            continue
        first_by_uri[target] = (path, label, number)
        files.append(ImageFile(target, path, label))
    return SourceListing(uri, IMAGE_LIST, layout, files, names, repeated_rows=repeated)
