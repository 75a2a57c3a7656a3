"""A folder or bucket prefix of images: the ImageFolder convention.

torchvision's `ImageFolder` (torchvision/datasets/folder.py: `find_classes` sorts the
subfolder names, `make_dataset` walks each class folder recursively) is what users of
lightly, solo-learn and dino already lay their data out for:

    root/cat/001.jpg, root/cat/more/002.png, root/dog/003.webp   -> classes ["cat", "dog"]
    root/001.jpg, root/002.png                                   -> unlabelled (flat)

- Class names are the sorted first path components that hold at least one image
  (object stores have no empty folders, so a folder without images is no class anywhere).
- Images directly in the root beside class folders belong to no class. ImageFolder
  silently leaves them out; we leave them out too, but list each one as skipped
  ("outside_class_folder"), so `--on_bad_image=fail` refuses such a folder and `skip`
  says what it dropped.
- Files whose extension is not an image's (.jpg .jpeg .jpe .jfif .png .webp .bmp, any
  case) are ignored and counted by extension; so are hidden files and anything under a
  hidden folder (a name starting with "."): .DS_Store, .ipynb_checkpoints, .git.
- Order: sorted relative paths (Python string order), the same on every store.
"""

from __future__ import annotations

import posixpath
from collections import Counter

from simclr import storage
from simclr.errors import UserError
from simclr.images.decode import IMAGE_EXTENSIONS
from simclr.images.sources import IMAGE_FOLDER, ImageFile, SourceListing

HIDDEN = "(hidden)"
NO_EXTENSION = "(none)"


def is_hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def extension(rel: str) -> str:
    return posixpath.splitext(rel)[1].lower() or NO_EXTENSION


def list_folder(uri: str, *, folder_labels: bool = True) -> SourceListing:
    root = uri.rstrip("/") if storage.is_remote(uri) else uri
    rels = storage.list_files(root)
    if not rels:
        where = "prefix" if storage.is_remote(root) else "folder"
        if not storage.is_remote(root) and not storage.exists(root):
            raise UserError(f"--source {uri}: no such file or folder")
        raise UserError(f"--source {uri}: the {where} holds no files")
    ignored: Counter[str] = Counter()
    images = []
    for rel in rels:
        if is_hidden(rel):
            ignored[HIDDEN] += 1
        elif extension(rel) in IMAGE_EXTENSIONS:
            images.append(rel)
        else:
            ignored[extension(rel)] += 1
    if not images:
        kinds = ", ".join(f"{n} {ext}" for ext, n in sorted(ignored.items()))
        raise UserError(
            f"--source {uri}: no JPEG, PNG, WebP or BMP files (by extension) among "
            f"{len(rels)} files ({kinds})"
        )
    nested = [rel for rel in images if "/" in rel]
    if not folder_labels or not nested:
        files = [ImageFile(storage.join(root, rel), rel) for rel in images]
        return SourceListing(uri, IMAGE_FOLDER, "flat", files, [], dict(ignored))
    class_names = sorted({rel.split("/", 1)[0] for rel in nested})
    index = {name: i for i, name in enumerate(class_names)}
    files = [ImageFile(storage.join(root, rel), rel, index[rel.split("/", 1)[0]]) for rel in nested]
    outside = [rel for rel in images if "/" not in rel]
    return SourceListing(
        uri, IMAGE_FOLDER, "class_folders", files, class_names, dict(ignored), outside
    )
