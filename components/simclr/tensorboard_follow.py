"""TensorBoard on a run's logs wherever they are: ``make tensorboard LOGDIR=...``.

``python -m simclr.tensorboard_follow --logdir=URI [--port=6006]``

TensorBoard (through TensorFlow 2.21's file systems) reads local paths and gs://
itself, so those are handed to it as they are. TensorFlow dropped s3:// (it moved to
tensorflow-io, which has no release for TensorFlow 2.21), so for s3:// (and any other
store we support that TensorFlow does not) a ``storage.LogFollower`` keeps a local
copy of the logs up to date every ``--sync_seconds`` while TensorBoard reads that copy:
it follows a run while it trains, with the same credentials and endpoint settings as
the training steps, and needs nothing TensorBoard does not already ship.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from simclr import errors, storage
from simclr.errors import UserError

# Schemes TensorBoard reads itself (TensorFlow's own file systems); others are followed.
TENSORBOARD_NATIVE_SCHEMES = ("", "gs")
DEFAULT_SYNC_SECONDS = 5.0


def tensorboard_command(logdir: str, host: str, port: int, reload_s: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tensorboard.main",
        f"--logdir={logdir}",
        f"--host={host}",
        f"--port={port}",
        f"--reload_interval={max(1, int(reload_s))}",
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m simclr.tensorboard_follow", description=__doc__)
    p.add_argument("--logdir", required=True, help="local path, gs:// or s3:// URI")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6006)
    p.add_argument(
        "--sync_seconds",
        type=float,
        default=DEFAULT_SYNC_SECONDS,
        help="how often to fetch new events from object storage",
    )
    p.add_argument("--work_dir", default="", help="where the local copy goes (default: a temp dir)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    if storage.scheme(args.logdir) in TENSORBOARD_NATIVE_SCHEMES:
        command = tensorboard_command(args.logdir, args.host, args.port, args.sync_seconds)
        return subprocess.call(command)
    work = args.work_dir or tempfile.mkdtemp(prefix="simclr-tensorboard-")
    follower = storage.LogFollower(args.logdir, work, interval_s=args.sync_seconds)
    try:
        follower.start()
        print(f"following {args.logdir} into {follower.local_dir}", flush=True)
        command = tensorboard_command(follower.local_dir, args.host, args.port, args.sync_seconds)
        board = subprocess.Popen(command)
        # Leave on SIGTERM as on Ctrl-C, stopping TensorBoard and cleaning up.
        signal.signal(signal.SIGTERM, lambda *_: board.terminate())
        try:
            return board.wait()
        except KeyboardInterrupt:
            board.terminate()
            return board.wait()
    finally:
        follower.stop()
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except UserError as err:
        return errors.report(err)


if __name__ == "__main__":
    sys.exit(main())
