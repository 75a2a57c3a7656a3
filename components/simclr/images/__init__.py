"""Your own images: a folder, bucket prefix or CSV/JSONL list -> an image dataset.

One concern per module:

- `sources`: what a `--source` is (`detect_source_kind`) and its sorted files
  (`list_source`), through `image_folder` (the ImageFolder convention) and `image_list`
  (CSV/JSONL `path[,label]`);
- `decode`: safe decoding to RGB (every bad file a `BadImage` with a reason);
- `resize`: the stored size (shorter side, aspect kept) and its defaults;
- `convert`: one file -> the stored JPEG/PNG bytes (what each worker process runs);
- `parallel`: ordered bounded maps, the CPUs a process may use, the process pool;
- `stream`: read, hash, dedup, convert in parallel, in order;
- `splits`: test split, record order and label subsets from the seed;
- `records`: tf.train.Example, the spool, TFRecord shards;
- `manifest`: manifest.json (format_version 2);
- `options`: `IngestOptions` (every knob, default and help);
- `ingest`: `ingest_images(source, output_dir, options) -> manifest`.

Nothing here imports TensorFlow at module level (worker processes only need Pillow).
"""

from simclr.images.ingest import IngestRun, IngestStats, ingest, ingest_images
from simclr.images.options import IngestOptions
from simclr.images.sources import (
    CIFAR_ARCHIVE,
    IMAGE_FOLDER,
    IMAGE_LIST,
    SOURCE_KINDS,
    ImageFile,
    SourceListing,
    detect_source_kind,
    list_source,
)

__all__ = [
    "CIFAR_ARCHIVE",
    "IMAGE_FOLDER",
    "IMAGE_LIST",
    "SOURCE_KINDS",
    "ImageFile",
    "IngestOptions",
    "IngestRun",
    "IngestStats",
    "SourceListing",
    "detect_source_kind",
    "ingest",
    "ingest_images",
    "list_source",
]
