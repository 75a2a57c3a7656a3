"""What a `--source` is, and the sorted list of image files (and labels) it names.

Three kinds, told apart by the name alone (plus, for a local path, whether it is a
directory), so the prepare_data task can dispatch before reading anything:

- `cifar_archive`: an `http(s)://` URL, or a name ending `.tar.gz`, `.tgz` or `.tar`
  (the existing `simclr.cifar` path);
- `image_list`: a file ending `.csv`, `.jsonl` or `.ndjson` (rows `path[,label]`; see
  image_list.py);
- `image_folder`: anything else: a local directory or a `gs://` / `s3://` prefix of
  images (class subfolders are labels; see image_folder.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from simclr import storage
from simclr.errors import UserError

CIFAR_ARCHIVE = "cifar_archive"
IMAGE_FOLDER = "image_folder"
IMAGE_LIST = "image_list"
SOURCE_KINDS = (CIFAR_ARCHIVE, IMAGE_FOLDER, IMAGE_LIST)
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
LIST_SUFFIXES = (".csv", ".jsonl", ".ndjson")
UNLABELLED = -1


@dataclass(frozen=True)
class ImageFile:
    """One file to ingest: where to read it, the name its record keeps, its label."""

    uri: str  # a local path, gs:// or s3:// URI
    path: str  # relative to the folder, or as the list wrote it (the record's `path`)
    label: int = UNLABELLED


@dataclass
class SourceListing:
    """Everything a source names, sorted by `path` (ties: by `uri`)."""

    uri: str
    kind: str  # IMAGE_FOLDER | IMAGE_LIST
    layout: str  # "class_folders" | "flat" | "csv" | "jsonl"
    files: list[ImageFile]
    class_names: list[str]  # empty when unlabelled
    # Not images by their name (folders only): how many, by lower-cased extension.
    ignored: dict[str, int] = field(default_factory=dict)
    # Images the layout gives no label (top-level files beside class folders): paths.
    outside_classes: list[str] = field(default_factory=list)
    # Rows of a list naming a file an earlier row already named: (path, first path).
    repeated_rows: list[tuple[str, str]] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return bool(self.class_names)

    @property
    def num_ignored(self) -> int:
        return sum(self.ignored.values())


def detect_source_kind(source: str) -> str:
    """CIFAR_ARCHIVE, IMAGE_LIST or IMAGE_FOLDER (see the module docstring).

    Raises UserError for an empty source or an unsupported URI scheme.
    """
    text = str(source or "").strip()
    if not text:
        raise UserError("--source is empty")
    lowered = text.lower()
    if lowered.startswith(("https://", "http://")):
        return CIFAR_ARCHIVE
    storage.scheme(text)  # refuses s3a://, az://, ... with the supported list
    local_dir = not storage.is_remote(text) and os.path.isdir(storage.local_path(text))
    if local_dir:
        return IMAGE_FOLDER
    name = lowered.rstrip("/")
    if name.endswith(ARCHIVE_SUFFIXES):
        return CIFAR_ARCHIVE
    if name.endswith(LIST_SUFFIXES):
        return IMAGE_LIST
    return IMAGE_FOLDER


def list_source(source: str, *, folder_labels: bool = True) -> SourceListing:
    """The sorted files (and labels) of an image folder/prefix or an image list.

    `folder_labels=False`: a folder's subfolders are not classes; every image under it,
    recursively, is unlabelled.
    """
    kind = detect_source_kind(source)
    if kind == CIFAR_ARCHIVE:
        raise UserError(f"--source {source}: a CIFAR-10 archive, not images (use simclr.cifar)")
    if kind == IMAGE_LIST:
        from simclr.images.image_list import read_image_list

        return read_image_list(source)
    from simclr.images.image_folder import list_folder

    return list_folder(source, folder_labels=folder_labels)
