"""Checkpoints in a local directory or gs:// (written locally, then uploaded).

TensorFlow only ever sees local paths: for gs:// the newest checkpoint is downloaded
into a local directory at start, and each new checkpoint is uploaded right after it is
written (data files first, the `checkpoint` index file last, so a reader never sees an
index pointing at missing files); checkpoints rotated out locally are deleted remotely.
With MultiWorkerMirroredStrategy every worker calls save() (saving may involve
collectives), but only the chief writes to the real directory; the others write to a
temporary one that is deleted (as TensorFlow's multi-worker guide prescribes).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

import tensorflow as tf

from simclr import storage

INDEX_FILE = "checkpoint"


def _latest_name(index_text: str) -> str | None:
    match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', index_text, re.M)
    return os.path.basename(match.group(1)) if match else None


def _download_latest(uri: str, local_dir: str) -> None:
    """Copies the newest checkpoint (and the index) from gs:// into local_dir."""
    index_uri = storage.join(uri, INDEX_FILE)
    if not storage.exists(index_uri):
        return
    name = _latest_name(storage.read_text(index_uri))
    if name is None:
        return
    files = [f for f in storage.list_files(uri) if f.startswith(name + ".")]
    if not files:
        return
    for rel in files:
        storage.download_file(storage.join(uri, rel), os.path.join(local_dir, rel))
    # An index naming only the checkpoint we have, so the manager starts consistent.
    with open(os.path.join(local_dir, INDEX_FILE), "w") as f:
        f.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')


class Checkpointer:
    """Saves and restores a tf.train.Checkpoint under `uri` (local or gs://)."""

    def __init__(
        self,
        checkpoint: tf.train.Checkpoint,
        uri: str,
        *,
        keep: int,
        chief: bool,
        cache_dir: str | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        self.uri = uri
        self.chief = chief
        self._temp_dirs: list[str] = []
        if storage.is_remote(uri):
            self.read_dir = self._temp_dir(cache_dir, "simclr-ckpt-")
            _download_latest(uri, self.read_dir)
        else:
            self.read_dir = uri
            os.makedirs(uri, exist_ok=True)
        write_dir = self.read_dir if chief else self._temp_dir(cache_dir, "simclr-ckpt-worker-")
        self.manager = tf.train.CheckpointManager(checkpoint, write_dir, max_to_keep=keep)

    def _temp_dir(self, cache_dir: str | None, prefix: str) -> str:
        if cache_dir:
            os.makedirs(cache_dir, exist_ok=True)
        path = tempfile.mkdtemp(prefix=prefix, dir=cache_dir or None)
        self._temp_dirs.append(path)
        return path

    def latest(self) -> str | None:
        return tf.train.latest_checkpoint(self.read_dir)

    def restore_latest(self) -> str | None:
        """Restores the newest checkpoint, if any; returns its path."""
        path = self.latest()
        if path is not None:
            # expect_partial: the optimizer's slot variables exist already (built up front).
            self.checkpoint.restore(path).expect_partial()
        return path

    def save(self, step: int) -> str:
        """Writes checkpoint `ckpt-<step>` and publishes it (chief only)."""
        path = self.manager.save(checkpoint_number=step)
        if self.chief and storage.is_remote(self.uri):
            self._upload(os.path.basename(path))
        return path

    def _upload(self, name: str) -> None:
        local = self.manager.directory
        new_files = [f for f in os.listdir(local) if f.startswith(name + ".")]
        for rel in sorted(new_files):
            storage.upload_file(os.path.join(local, rel), storage.join(self.uri, rel))
        storage.upload_file(os.path.join(local, INDEX_FILE), storage.join(self.uri, INDEX_FILE))
        kept = {os.path.basename(p) for p in self.manager.checkpoints}
        for rel in storage.list_files(self.uri):
            prefix = rel.split(".", 1)[0]
            if rel != INDEX_FILE and re.fullmatch(r"ckpt-\d+", prefix) and prefix not in kept:
                storage.delete(storage.join(self.uri, rel))

    def close(self) -> None:
        for path in self._temp_dirs:
            shutil.rmtree(path, ignore_errors=True)
