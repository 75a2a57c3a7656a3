"""Observability of a pretraining run: console progress, TensorBoard, kNN monitor."""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from simclr import data, storage
from simclr.evaluate import knn_scores


def log(message: str) -> None:
    """One console line (stdout, flushed: visible live in KFP/Vertex logs)."""
    print(f"[pretrain] {message}", flush=True)


def format_eta(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(max(0.0, seconds))))


class Throughput:
    """Images/s and step time over the steps since the last `take()` (the compile excluded)."""

    def __init__(self, global_batch: int) -> None:
        self.global_batch = global_batch
        self._start: float | None = None
        self._steps = 0
        self.total_time = 0.0
        self.total_steps = 0

    def step_done(self) -> None:
        now = time.perf_counter()
        if self._start is None:  # first step of the session: tracing/compiling, not counted
            self._start = now
            return
        self._steps += 1

    def take(self) -> tuple[float, float] | None:
        """(images/s, seconds/step) since the previous call; None before two steps."""
        if self._start is None or self._steps == 0:
            return None
        now = time.perf_counter()
        elapsed = now - self._start
        rate = self._steps * self.global_batch / elapsed
        step_time = elapsed / self._steps
        self.total_time += elapsed
        self.total_steps += self._steps
        self._start, self._steps = now, 0
        return rate, step_time

    def overall(self) -> float:
        """Images/s over all measured steps of this session."""
        self.take()
        if self.total_steps == 0:
            return 0.0
        return self.total_steps * self.global_batch / self.total_time


class SummaryLogger:
    """A TensorBoard writer on a local directory, mirrored to `uri` while training runs.

    For a local `uri` the events are written there directly. For gs:// they go to a
    local temporary directory that a `storage.DirectoryMirror` uploads every
    `sync_seconds`; the writer flushes at half that interval, so each upload carries
    recent events. Non-chief workers get a no-op writer.
    """

    def __init__(self, uri: str, *, sync_seconds: float, enabled: bool = True) -> None:
        self.uri = uri
        self._mirror: storage.DirectoryMirror | None = None
        self._temp: str | None = None
        self._closed = False
        if not enabled:
            self.writer = tf.summary.create_noop_writer()
            return
        if storage.is_remote(uri):
            self._temp = tempfile.mkdtemp(prefix="simclr-tb-")
            local = self._temp
            self._mirror = storage.DirectoryMirror(local, uri, interval_s=sync_seconds).start()
        else:
            local = uri
            os.makedirs(local, exist_ok=True)
        flush_ms = int(max(100, sync_seconds * 500))
        self.writer = tf.summary.create_file_writer(local, flush_millis=flush_ms)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)

    def images(self, step: int, name: str, images: tf.Tensor, description: str = "") -> None:
        with self.writer.as_default(step=step):
            tf.summary.image(
                name, images, max_outputs=int(images.shape[0]), description=description
            )

    def sync(self) -> None:
        """Flush, and upload now (e.g. after a monitor and at the end)."""
        self.writer.flush()
        if self._mirror is not None:
            self._mirror.sync()

    def close(self) -> None:
        """Final flush and upload; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.writer.flush()
        self.writer.close()
        if self._mirror is not None:
            self._mirror.stop()
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)


class KnnMonitor:
    """kNN top-1 of the current encoder: the largest labelled subset as the bank, a fixed
    random sample of `num_queries` test images as queries (cheap enough to run during
    training; random because a split may be stored grouped by class)."""

    def __init__(self, data_dir: str, manifest: dict, num_queries: int, batch_size: int = 500):
        subsets = manifest.get("label_subsets", {})
        if subsets:
            largest = max(subsets, key=lambda key: int(subsets[key]["num_examples"]))
            bank_split = f"label_{largest}"
        else:
            bank_split = "train"
        query_split = "test" if "test" in manifest["splits"] else "train"
        self.bank_x, self.bank_y = data.load_arrays(data_dir, bank_split, max_examples=10000)
        self.query_x, self.query_y = data.load_arrays(
            data_dir, query_split, max_examples=num_queries, sample_seed=0
        )
        self.description = (
            f"bank: {bank_split} ({len(self.bank_y)}), queries: {query_split} ({len(self.query_y)})"
        )
        self.num_classes = len(manifest["class_names"])
        self.batch_size = batch_size
        self._embed = None

    def _features(self, images: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size]
            # Pad to a fixed batch so the traced function is reused.
            pad = self.batch_size - len(batch)
            if pad:
                batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), batch.dtype)])
            out.append(self._embed(tf.constant(batch)).numpy()[: self.batch_size - pad])
        return np.concatenate(out)

    def __call__(self, encoder: keras.Model) -> float:
        if self._embed is None:

            @tf.function
            def embed(images):
                return encoder(tf.cast(images, tf.float32) / 255.0, training=False)

            self._embed = embed
        bank = self._features(self.bank_x)
        queries = self._features(self.query_x)
        # The evaluate task's protocol (k=200, cosine, exp(s/0.1) votes), so the figures compare.
        scores = knn_scores(bank, self.bank_y, queries, self.num_classes)
        return float(np.mean(scores.argmax(axis=1) == self.query_y))


def view_grid(images: np.ndarray, view_a: tf.Tensor, view_b: tf.Tensor) -> tf.Tensor:
    """[N, H, 3W, 3] rows of (original | view a | view b) for tf.summary.image."""
    original = tf.cast(images, tf.float32) / 255.0
    return tf.concat([original, view_a, view_b], axis=2)
