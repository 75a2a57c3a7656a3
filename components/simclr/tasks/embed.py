"""embed: the embeddings of every image of a prepared dataset, as Parquet shards.

    python -m simclr.tasks.embed --model_dir=DIR --data_dir=DIR --output_dir=DIR
        [--splits=train,test] [--batch_size=256] [--rows_per_shard=N]

``--model_dir`` is pretrain's ``--output_dir`` (or the ``encoder/`` inside it);
``--data_dir`` a prepare_data output: the CIFAR-10 layout (manifest format_version 1) or
an image dataset (format_version 2, ``simclr.images``: JPEG/PNG records, decoded and
centre-cropped as ``simclr.export.fit_to_training_size``, i.e. as the SavedModel does);
or an image folder, bucket prefix or CSV/JSONL list, ingested first as prepare_data would
(at the encoder's sizes, all in split "train"; bad and duplicate files are skipped).
Every directory may be local, gs:// or s3://.

Writes ``--output_dir/<split>-00000-of-0000N.parquet`` (rows in record order: ``id``,
``path``, ``label``, ``embedding``; see ``simclr.embeddings``) and ``metrics.json``
(``num_images``, ``images_per_second``, ``seconds``, ``embedding_dim``, per split its
``num_images`` and ``files``), staged and published with metrics.json last; on any error
(including non-finite embeddings) nothing is published and the task exits 2 with one line.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from absl import flags

from simclr import data, knobs, storage
from simclr import embeddings as emb
from simclr.errors import UserError
from simclr.knobs import knob
from simclr.tasks._app import dataclass_from_flags, define_dataclass_flags, run_task

_log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


@dataclass(kw_only=True)
class EmbedConfig:
    model_dir: str = knob(help="pretrain's --output_dir, or the encoder/ directory inside it.")
    data_dir: str = knob(
        help="prepare_data output, or an image folder, prefix or CSV/JSONL list (local/gs/s3)."
    )
    output_dir: str = knob(
        help="Where the Parquet shards and metrics.json go (local, gs:// or s3://)."
    )
    splits: str = knob("", "Comma-separated splits to embed (default: all splits of the manifest).")
    batch_size: int = knob(256, "Images per encoder call.", at_least=1)
    rows_per_shard: int = knob(
        0, "Rows per Parquet file; 0: about 128 MiB of embeddings each.", at_least=0
    )
    progress_every_s: float = knob(10.0, "Seconds between progress lines.", above=0)


def define_flags() -> None:
    define_dataclass_flags(EmbedConfig)


def config_from_flags(values: flags.FlagValues) -> EmbedConfig:
    return dataclass_from_flags(EmbedConfig, values)


# --------------------------------------------------------------------------- reading


def _splits(config: EmbedConfig, manifest: dict[str, Any]) -> list[str]:
    available = sorted(manifest["splits"])
    wanted = [s.strip() for s in config.splits.split(",") if s.strip()] or available
    missing = [s for s in wanted if s not in available]
    if missing:
        raise UserError(
            f"--splits: no split {', '.join(missing)} in {config.data_dir} "
            f"(available: {', '.join(available) or 'none'})"
        )
    return list(dict.fromkeys(wanted))


# --------------------------------------------------------------------------- run


class _Progress:
    def __init__(self, total: int, every_s: float) -> None:
        self.total, self.every_s, self.done = total, every_s, 0
        self.start = self.last = time.perf_counter()

    def add(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every_s or self.done == self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / max(rate, 1e-9)
            _log.info(
                "embed: %d/%d images (%.0f%%), %.0f images/s, ETA %d:%02d",
                self.done,
                self.total,
                100 * self.done / max(self.total, 1),
                rate,
                eta // 60,
                eta % 60,
            )


def run(config: EmbedConfig) -> dict[str, Any]:
    """Embeds the splits; writes the shards and metrics.json; returns metrics.json's content."""
    for name in ("model_dir", "data_dir", "output_dir"):
        if not getattr(config, name):
            raise UserError(f"--{name} is required")
    knobs.check(config)
    storage.check_writable(config.output_dir, "--output_dir")  # before any work
    from simclr.model import load_encoder  # TensorFlow: only after the flags are checked

    model, model_config = load_encoder(config.model_dir)
    image_size = int(model.inputs[0].shape[1])
    with tempfile.TemporaryDirectory(prefix="simclr-embed-") as work:
        data_dir = _dataset_dir(config.data_dir, image_size, model_config, work)
        return _embed(config, data_dir, model, model_config, image_size)


def _dataset_dir(source: str, image_size: int, model_config: dict[str, Any], work: str) -> str:
    """`source` when it is a prepare_data output; an image folder, bucket prefix or
    CSV/JSONL list is first ingested into `work` as prepare_data would (simclr.images, at
    the encoder's image and stored sizes, every image in one "train" split), so its
    pixels are the ones the SavedModel would see."""
    if storage.exists(storage.join(source, data.MANIFEST)):
        return source
    from simclr.images import IngestOptions, ingest
    from simclr.images.sources import CIFAR_ARCHIVE, detect_source_kind

    missing = not storage.is_remote(source) and not os.path.exists(storage.local_path(source))
    if missing or detect_source_kind(source) == CIFAR_ARCHIVE:
        raise UserError(
            f"{source}: no manifest (neither a prepare_data output nor an image folder or list)"
        )
    stored = model_config.get("stored_size")
    options = IngestOptions(
        image_size=image_size,
        stored_size=int(stored) if stored else None,
        test_fraction=0.0,
        label_fractions=(),
    )
    out = os.path.join(work, "dataset")
    _log.info("embed: %s is not a prepared dataset; ingesting its images first", source)
    ingest(source, out, options)
    return out


def _embed(config: EmbedConfig, data_dir: str, model, model_config, image_size: int) -> dict:
    from simclr.embed_batches import embed_batch, split_batches

    manifest = data.load_manifest(data_dir)
    splits = _splits(config, manifest)
    version = manifest["format_version"]
    if version == 2 and int(manifest.get("image_size", image_size)) != image_size:
        raise UserError(
            f"{config.data_dir} was prepared at image_size {manifest['image_size']}, "
            f"the encoder takes {image_size}"
        )
    dim = int(model.outputs[0].shape[-1])
    per_shard = emb.rows_per_shard(dim, int(config.rows_per_shard))
    local = storage.localize_dir(data_dir)
    totals = {s: int(manifest["splits"][s]["num_examples"]) for s in splits}
    progress = _Progress(sum(totals.values()), float(config.progress_every_s))
    encoder_facts = {k: model_config.get(k) for k in ("encoder", "width_multiplier", "stem")}
    metrics: dict[str, Any] = {"splits": {}}
    start = time.perf_counter()
    with storage.atomic_dir(config.output_dir, last=(METRICS_FILE,)) as staging:
        for split in splits:
            meta = {
                "split": split,
                "class_names": manifest.get("class_names", []),
                "embedding_dim": dim,
                "normalized": True,
                "encoder": {**encoder_facts, "feature_dim": dim, "image_size": image_size},
                "model_dir": config.model_dir,
                "data_dir": config.data_dir,
            }
            writer = emb.ShardedWriter(staging, split, totals[split], per_shard, meta)
            batches = split_batches(local, manifest, split, int(config.batch_size), image_size)
            for images, labels, paths in batches:
                ids = np.arange(len(labels), dtype=np.int64) + writer.added
                vectors = embed_batch(model, images, ids, split)
                writer.add(ids, vectors, labels, paths)
                progress.add(len(labels))
            files = writer.close()
            metrics["splits"][split] = {"num_images": totals[split], "files": files}
        seconds = time.perf_counter() - start
        metrics.update(
            {
                "num_images": progress.done,
                "seconds": seconds,
                "images_per_second": progress.done / max(seconds, 1e-9),
                "embedding_dim": dim,
                "normalized": True,
                "rows_per_shard": per_shard,
                "model_dir": config.model_dir,
                "data_dir": config.data_dir,
            }
        )
        with open(os.path.join(staging, METRICS_FILE), "w") as f:
            json.dump(metrics, f, indent=2, sort_keys=True)
    _log.info(
        "embed: %d images in %.1fs (%.0f images/s) -> %s",
        progress.done,
        seconds,
        metrics["images_per_second"],
        config.output_dir,
    )
    return metrics


def main(argv: list[str] | None = None) -> None:
    run_task(define_flags, config_from_flags, run, argv)


if __name__ == "__main__":
    main()
