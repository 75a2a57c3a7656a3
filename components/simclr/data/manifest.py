"""The manifest (`manifest.json`, written last: its presence means "complete"): its
canonical text, reading and checking it, what it says about the dataset, its splits,
and the local copy of a data directory."""

from __future__ import annotations

import json
from typing import Any

from simclr import storage
from simclr.data.records import (
    ENCODED_FORMATS,
    FORMAT_VERSION,
    IMAGE_FORMAT_VERSION,
    IMAGE_SHAPE,
    LABEL_PREFIX,
    MANIFEST,
)
from simclr.errors import UserError


def manifest_json(manifest: dict[str, Any]) -> str:
    """Canonical text of a manifest (sorted keys, so reruns are byte-identical)."""
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def load_manifest(data_dir: str) -> dict[str, Any]:
    """Reads DIR/manifest.json; UserError if it is missing, corrupt or of another version."""
    uri = storage.join(data_dir, MANIFEST)
    if not storage.exists(uri):
        raise UserError(f"{uri}: no manifest (is {data_dir} a prepare_data output?)")
    text = storage.read_bytes(uri).decode("utf-8", errors="replace")
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{uri}: corrupt manifest: {err}") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version not in (FORMAT_VERSION, IMAGE_FORMAT_VERSION):
        raise UserError(
            f"{uri}: unsupported manifest format_version {version!r} (expected "
            f"{FORMAT_VERSION} or {IMAGE_FORMAT_VERSION})"
        )
    if "splits" not in manifest:
        raise UserError(f"{uri}: corrupt manifest: missing splits")
    if version == FORMAT_VERSION and manifest.get("image_format") != "raw_uint8":
        raise UserError(f"{uri}: corrupt manifest: missing splits or image_format raw_uint8")
    if version == IMAGE_FORMAT_VERSION and not (
        manifest.get("image_format") in ENCODED_FORMATS
        and isinstance(manifest.get("image_size"), int)
        and isinstance(manifest.get("stored_size"), int)
        and 0 < manifest["image_size"] <= manifest["stored_size"]
    ):
        raise UserError(
            f"{uri}: corrupt manifest: an image dataset needs image_format jpeg or png "
            "and image_size <= stored_size"
        )
    return manifest


def is_image_dataset(manifest: dict[str, Any]) -> bool:
    """True for `simclr.images` datasets (encoded pictures), False for CIFAR-10 raw records."""
    return manifest.get("format_version") == IMAGE_FORMAT_VERSION


def is_labelled(manifest: dict[str, Any]) -> bool:
    """Whether the records carry class labels (the label protocols need them).

    The rule (docs/design.md, "Your own images"): labelled unless the manifest says
    `"labelled": false`, and only with at least one class name. The CIFAR-10 manifest
    (format_version 1) has no `labelled` key and ten class names: labelled. An unlabelled
    image dataset writes `"labelled": false`, `"class_names": []`, labels -1.
    """
    return bool(manifest.get("labelled", True)) and bool(manifest.get("class_names"))


def image_size(manifest: dict[str, Any]) -> int:
    """The training resolution: the manifest's `image_size` (32 for CIFAR-10)."""
    return int(manifest.get("image_size", IMAGE_SHAPE[0]))


def local_data_dir(data_dir: str, cache_root: str | None = None) -> str:
    """A local directory with the data files (gs:// or s3:// data: downloaded once, cached)."""
    if not storage.is_remote(data_dir):
        load_manifest(data_dir)  # fail early and clearly on a wrong directory
        return data_dir
    load_manifest(data_dir)
    return storage.localize_dir(data_dir, cache_root=cache_root)


def split_names(manifest: dict[str, Any]) -> list[str]:
    """All readable splits: "train", "test", "label_0.01", ..."""
    subsets = [LABEL_PREFIX + key for key in manifest.get("label_subsets", {})]
    return sorted(manifest["splits"]) + subsets


def _split_entries(manifest: dict[str, Any], split: str, where: str) -> list[dict[str, Any]]:
    """[{"file", "num_examples"}, ...] for a split."""
    if split in manifest["splits"]:
        entry = manifest["splits"][split]
        if "shards" in entry:
            return entry["shards"]
        return [{"file": f, "num_examples": None} for f in entry["files"]]
    if split.startswith(LABEL_PREFIX) and split[len(LABEL_PREFIX) :] in manifest.get(
        "label_subsets", {}
    ):
        entry = manifest["label_subsets"][split[len(LABEL_PREFIX) :]]
        return [{k: entry[k] for k in ("file", "num_examples", "sha256") if k in entry}]
    raise UserError(f"{where}: no split {split!r}; available: {', '.join(split_names(manifest))}")


def split_size(data_dir: str, split: str) -> int:
    """Number of examples in a split, from the manifest."""
    manifest = load_manifest(data_dir)
    if split in manifest["splits"]:
        return int(manifest["splits"][split]["num_examples"])
    return sum(int(e["num_examples"]) for e in _split_entries(manifest, split, data_dir))
