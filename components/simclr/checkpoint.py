"""Checkpoints in a local directory or object storage (written locally, then uploaded).

TensorFlow only ever sees local paths: for a remote directory the newest checkpoint is
downloaded into a local directory at start, and each new checkpoint is uploaded right
after it is written (data files first, the `checkpoint` index file last, so a reader
never sees an index pointing at missing files).

Checkpoints are never lost:
- At start, an index naming a checkpoint whose files are missing is an error naming the
  files; with `fallback=True` the newest complete checkpoint is used instead (and the
  index rewritten to name it). Checkpoint files that no index names (a kill during the
  very first upload: data files go first) are no error: the newest complete checkpoint
  is used, or training starts afresh if there is none.
- A checkpoint that is complete but corrupt (a data file or index failing its checksum)
  or that holds a non-finite value is never resumed from: it is an error naming it and
  the next older complete one; with `fallback=True` the complete checkpoints are tried
  newest first (a warning names each one skipped and why) and the first intact one is
  used (`restore_latest`). For a remote directory each one tried is downloaded.
- `ckpt-N_temp` directories (TensorFlow's staging area, left by a kill mid-save) are
  removed at start.
- A remote checkpoint is deleted only after a newer one is fully uploaded and indexed,
  and only if it is older than that one and not among the `keep` newest complete ones;
  checkpoints newer than the one just written are never touched.
With MultiWorkerMirroredStrategy every worker calls save() (saving may involve
collectives), but only the chief writes to the real directory; the others write to a
temporary one that is deleted (as TensorFlow's multi-worker guide prescribes).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from simclr import storage
from simclr.errors import UserError

INDEX_FILE = "checkpoint"
_CHECKPOINT_FILE = re.compile(r"(ckpt-(\d+))\.(index|data-(\d+)-of-(\d+))")


def _latest_name(index_text: str) -> str | None:
    match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', index_text, re.M)
    return os.path.basename(match.group(1)) if match else None


def _index_text(names: list[str]) -> str:
    """A CheckpointState index (text proto) naming `names`, oldest first, the last latest."""
    lines = [f'model_checkpoint_path: "{names[-1]}"']
    lines += [f'all_model_checkpoint_paths: "{name}"' for name in names]
    return "\n".join(lines) + "\n"


def _step(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


def missing_files(listing: list[str], name: str) -> list[str]:
    """The files checkpoint `name` lacks in a directory listing ([] if it is complete):
    its `.index` and every data shard `.data-<i>-of-<n>`."""
    present = {
        m.group(3) for f in listing if (m := _CHECKPOINT_FILE.fullmatch(f)) and m.group(1) == name
    }
    missing = [] if "index" in present else [f"{name}.index"]
    shard_counts = {int(p.rsplit("-of-", 1)[1]) for p in present if p.startswith("data-")}
    if not shard_counts:
        return missing + [f"{name}.data-00000-of-00001"]
    for count in sorted(shard_counts):
        for shard in range(count):
            part = f"data-{shard:05d}-of-{count:05d}"
            if part not in present:
                missing.append(f"{name}.{part}")
    return missing


def checkpoint_names(listing: list[str]) -> list[str]:
    """Every checkpoint name with at least one file in the listing, oldest first."""
    names = {m.group(1) for f in listing if (m := _CHECKPOINT_FILE.fullmatch(f))}
    return sorted(names, key=_step)


def complete_checkpoints(listing: list[str]) -> list[str]:
    """The checkpoints whose files are all there, oldest first."""
    return [name for name in checkpoint_names(listing) if not missing_files(listing, name)]


def resolve_latest(uri: str, *, fallback: bool) -> str | None:
    """The checkpoint to resume from in `uri` (None: there is none, start afresh).

    With no index, the newest complete checkpoint (None if there is none). Raises
    UserError if the index names a checkpoint with missing files, unless `fallback`:
    then the newest complete checkpoint (None if there is none).
    """
    listing = storage.list_files(uri)
    names = checkpoint_names(listing)
    has_index = INDEX_FILE in listing
    name = _latest_name(storage.read_text(storage.join(uri, INDEX_FILE))) if has_index else None
    complete = complete_checkpoints(listing)
    if name is None:  # never indexed: nothing was promised, nothing older is lost
        return complete[-1] if names and complete else None
    missing = missing_files(listing, name)
    if not missing:
        return name
    problem = f"its index names {name}, whose files are missing: {', '.join(missing)}"
    if fallback:
        return complete[-1] if complete else None
    newest = f"; the newest complete one is {complete[-1]}" if complete else ""
    raise UserError(
        f"checkpoint directory {uri}: {problem}{newest} (pass --checkpoint_fallback to "
        "resume from the newest complete checkpoint, or use a new --checkpoint_dir)"
    )


_STALE_TEMP = re.compile(r"ckpt-\d+_temp(/.*)?")


def remove_stale_temp(uri: str) -> list[str]:
    """Deletes the `ckpt-N_temp` staging directories a killed save left; returns them."""
    if not storage.is_remote(uri):
        if not os.path.isdir(uri):
            return []
        stale = [d for d in os.listdir(uri) if _STALE_TEMP.fullmatch(d)]
        for d in stale:
            shutil.rmtree(os.path.join(uri, d), ignore_errors=True)
        return stale
    stale = [rel for rel in storage.list_files(uri) if _STALE_TEMP.fullmatch(rel)]
    for rel in stale:
        storage.delete(storage.join(uri, rel))
    return stale


def _kept_before(listing: list[str], name: str, keep: int) -> list[str]:
    """The complete checkpoints older than `name` that stay beside it (keep - 1 newest)."""
    older = [n for n in complete_checkpoints(listing) if _step(n) < _step(name)]
    return older[-(keep - 1) :] if keep > 1 else []


def problem_with(prefix: str) -> str | None:
    """Why the checkpoint at local `prefix` must not be resumed from (None: it is intact).

    Reads every tensor: TensorFlow's bundle reader checks the index's block checksums
    and each tensor's CRC-32C, so a flipped byte anywhere is found here, before a restore
    could half-assign the model. Floating tensors must be finite.
    """
    try:
        reader = tf.train.load_checkpoint(prefix)
        non_finite = []
        for key, dtype in sorted(reader.get_variable_to_dtype_map().items()):
            value = reader.get_tensor(key)
            if dtype.is_floating and not np.isfinite(np.asarray(value, np.float32)).all():
                non_finite.append(key)
    except (tf.errors.OpError, ValueError) as e:
        return f"corrupt ({_first_line(e)})"
    if non_finite:
        return f"holds non-finite values ({len(non_finite)} tensors, e.g. {non_finite[0]})"
    return None


def _first_line(error: Exception) -> str:
    text = getattr(error, "message", None) or str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def _download(uri: str, name: str, local_dir: str) -> None:
    """Copies checkpoint `name` from `uri` into local_dir, with an index naming only it."""
    for rel in storage.list_files(uri):
        match = _CHECKPOINT_FILE.fullmatch(rel)
        if match and match.group(1) == name:
            storage.download_file(storage.join(uri, rel), os.path.join(local_dir, rel))
    with open(os.path.join(local_dir, INDEX_FILE), "w") as f:
        f.write(_index_text([name]))


class Checkpointer:
    """Saves and restores a tf.train.Checkpoint under `uri` (local or remote)."""

    def __init__(
        self,
        checkpoint: tf.train.Checkpoint,
        uri: str,
        *,
        keep: int,
        chief: bool,
        cache_dir: str | None = None,
        fallback: bool = False,
    ) -> None:
        self.checkpoint = checkpoint
        self.uri = uri
        self.chief = chief
        self.keep = keep
        self.fallback = fallback
        self._temp_dirs: list[str] = []
        if chief:
            remove_stale_temp(uri)
        latest = resolve_latest(uri, fallback=fallback)
        # What restore_latest may try, newest first: `latest`, then the complete ones before it.
        complete = complete_checkpoints(storage.list_files(uri)) if latest else []
        self.candidates = [n for n in reversed(complete) if _step(n) < _step(latest)]
        self.candidates = [latest, *self.candidates] if latest else []
        if storage.is_remote(uri):
            self.read_dir = self._temp_dir(cache_dir, "simclr-ckpt-")
            if latest is not None:
                _download(uri, latest, self.read_dir)
        else:
            self.read_dir = uri
            os.makedirs(uri, exist_ok=True)
            if latest is not None and chief:
                self._reindex_local(latest)
        self._write_dir = (
            self.read_dir if chief else self._temp_dir(cache_dir, "simclr-ckpt-worker-")
        )
        self.manager = tf.train.CheckpointManager(checkpoint, self._write_dir, max_to_keep=keep)

    def _reindex_local(self, latest: str) -> None:
        """Makes the local index name `latest` (and the complete ones before it) only."""
        index = os.path.join(self.uri, INDEX_FILE)
        if os.path.exists(index):
            with open(index) as f:
                if _latest_name(f.read()) == latest:
                    return
        kept = _kept_before(storage.list_files(self.uri), latest, self.keep)
        with open(index + ".tmp", "w") as f:
            f.write(_index_text(kept + [latest]))
        os.replace(index + ".tmp", index)

    def _temp_dir(self, cache_dir: str | None, prefix: str) -> str:
        if cache_dir:
            os.makedirs(cache_dir, exist_ok=True)
        path = tempfile.mkdtemp(prefix=prefix, dir=cache_dir or None)
        self._temp_dirs.append(path)
        return path

    def latest(self) -> str | None:
        return tf.train.latest_checkpoint(self.read_dir)

    def restore_latest(self, check: Callable[[str], None] | None = None) -> str | None:
        """Restores the newest intact checkpoint, if any; returns its local path.

        `check(path)` (e.g. the resume-settings check) runs on each candidate once it is
        known to be intact, before the restore; its UserError is final (no fallback: an
        older checkpoint of the same run has the same settings). A corrupt or non-finite
        newest checkpoint is an error naming the next older one, or with `fallback`
        skipped with a warning; none intact is an error.
        """
        skipped: list[str] = []
        for i, name in enumerate(self.candidates):
            path = self._localise(name)
            problem = problem_with(path)
            if problem is None:
                if check is not None:
                    check(path)
                problem = self._restore(path)
            if problem is None:
                if skipped:
                    self._adopt(name)
                return path
            if not self.fallback:
                raise UserError(self._refusal(name, problem, self.candidates[i + 1 :]))
            skipped.append(f"{name} {problem}")
            print(
                f"warning: checkpoint {name} in {self.uri} is skipped: {problem}",
                file=sys.stderr,
                flush=True,
            )
        if skipped:
            raise UserError(
                f"no checkpoint in {self.uri} can be resumed from: {'; '.join(skipped)} "
                "(use a new --checkpoint_dir to start afresh)"
            )
        return None

    def _refusal(self, name: str, problem: str, older: list[str]) -> str:
        what = f"checkpoint {name} in {self.uri} {problem.replace('corrupt (', 'is corrupt (', 1)}"
        if older:
            return f"{what}; pass --checkpoint_fallback to resume from {older[0]}"
        return f"{what}; there is no older complete checkpoint: use a new --checkpoint_dir"

    def _restore(self, path: str) -> str | None:
        # expect_partial: the optimizer's slot variables exist already (built up front).
        try:
            self.checkpoint.restore(path).expect_partial()
        except ValueError as e:  # e.g. "Shapes (16,) and (8,) are incompatible"
            raise UserError(
                f"checkpoint {path} does not fit this model (other --encoder, "
                f"--width_multiplier or projection flags?): {_first_line(e)}"
            ) from e
        except tf.errors.OpError as e:  # read fine a moment ago: changed under us
            return f"corrupt ({_first_line(e)})"
        return None

    def _localise(self, name: str) -> str:
        """The local path of candidate `name` (downloaded alone into read_dir if remote)."""
        if storage.is_remote(self.uri) and not os.path.exists(
            os.path.join(self.read_dir, f"{name}.index")
        ):
            for rel in os.listdir(self.read_dir):  # only one candidate on disk at a time
                if _CHECKPOINT_FILE.fullmatch(rel):
                    os.remove(os.path.join(self.read_dir, rel))
            _download(self.uri, name, self.read_dir)
        return os.path.join(self.read_dir, name)

    def _adopt(self, name: str) -> None:
        """After a fallback: the index names `name` (the one resumed from) as the latest,
        and the manager, which read the old index, starts again from it. The skipped newer
        checkpoint's files are left for inspection; saving that step again replaces them."""
        if storage.is_remote(self.uri):
            for rel in os.listdir(self.read_dir):
                match = _CHECKPOINT_FILE.fullmatch(rel)
                if match and match.group(1) != name:
                    os.remove(os.path.join(self.read_dir, rel))
        elif self.chief:
            self._reindex_local(name)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._write_dir, max_to_keep=self.keep
        )

    def save(self, step: int) -> str:
        """Writes checkpoint `ckpt-<step>` and publishes it (chief only)."""
        path = self.manager.save(checkpoint_number=step)
        if self.chief and storage.is_remote(self.uri):
            self._upload(os.path.basename(path))
        return path

    def _upload(self, name: str) -> None:
        local = self.manager.directory
        for rel in sorted(f for f in os.listdir(local) if f.startswith(name + ".")):
            storage.upload_file(os.path.join(local, rel), storage.join(self.uri, rel))
        listing = storage.list_files(self.uri)
        missing = missing_files(listing, name)
        if missing:  # never index (or delete for) a checkpoint that is not all there
            raise RuntimeError(f"{self.uri}: {name} uploaded but {', '.join(missing)} not listed")
        kept = _kept_before(listing, name, self.keep)
        storage.write_text(storage.join(self.uri, INDEX_FILE), _index_text(kept + [name]))
        # Only now that `name` is complete and indexed: drop what is older and not kept.
        doomed = {n for n in checkpoint_names(listing) if _step(n) < _step(name)} - set(kept)
        for rel in listing:
            match = _CHECKPOINT_FILE.fullmatch(rel)
            if match and match.group(1) in doomed:
                storage.delete(storage.join(self.uri, rel))

    def close(self) -> None:
        for path in self._temp_dirs:
            shutil.rmtree(path, ignore_errors=True)
