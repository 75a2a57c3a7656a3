"""Docker fixtures (see conftest.py): a real engine, and our images built from this checkout.

- `docker_cli`: path of a docker client that builds with BuildKit, talking to a running
  engine. When none answers, containers/engine.sh starts dockerd (as root, where it is
  installed) and the fixture stops it at the end of the session. Where no engine can be
  started the container tests are skipped with a warning; under CI=true they fail.
- `built_images`: `BuiltImages` (cpu and gpu image names, build seconds) built from this
  checkout with Docker's layer cache, on the base that `containers/engine.sh base` makes
  available (present, pulled, or a Debian stand-in where no registry is reachable).
- `docker_run(cli, image, *args, user=..., ...)`: `docker run --rm` of one command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["BuiltImages", "built_images", "docker_cli", "docker_run", "in_ci"]

REPO = Path(__file__).resolve().parents[1]
ENGINE = REPO / "containers" / "engine.sh"
TEST_IMAGE_REPO = "simclr-kfp-test"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _engine(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ENGINE), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _no_engine(reason: str) -> None:
    message = f"NO DOCKER ENGINE: the container tests did not run ({reason})"
    if in_ci():
        pytest.fail(f"CI=true: the container tests must run, but {reason}", pytrace=False)
    warnings.warn(message, stacklevel=2)
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_cli() -> Iterator[str]:
    started = _engine("start", timeout=120)
    if started.returncode != 0:
        _no_engine(started.stderr.strip() or "containers/engine.sh start failed")
    pid = next(
        (
            int(line.split()[-1])
            for line in started.stdout.splitlines()
            if "started dockerd" in line
        ),
        None,
    )
    cli = _engine("cli").stdout.strip() or "docker"
    try:
        yield cli
    finally:
        if pid is not None:  # ours: stop it again
            os.kill(pid, signal.SIGTERM)
            for _ in range(60):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.5)


@dataclass
class BuiltImages:
    cli: str
    cpu: str
    gpu: str
    repo: str
    tag: str
    build_seconds: dict[str, float] = field(default_factory=dict)


def _build(cli: str, dockerfile: str, image: str) -> float:
    started = time.monotonic()
    result = subprocess.run(
        [cli, "build", "--network=host", "-f", dockerfile, "-t", image, "."],
        cwd=REPO,
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert result.returncode == 0, f"{dockerfile}:\n{result.stdout[-3000:]}{result.stderr[-6000:]}"
    return time.monotonic() - started


@pytest.fixture(scope="session")
def built_images(docker_cli: str) -> BuiltImages:
    from simclr_pipeline.components import DEFAULT_IMAGE_TAG, Images

    base = _engine("base")
    assert base.returncode == 0, base.stdout + base.stderr
    names = Images.from_repo(TEST_IMAGE_REPO, DEFAULT_IMAGE_TAG)
    images = BuiltImages(
        cli=docker_cli, cpu=names.cpu, gpu=names.gpu, repo=TEST_IMAGE_REPO, tag=DEFAULT_IMAGE_TAG
    )
    for kind, image in (("cpu", names.cpu), ("gpu", names.gpu)):
        images.build_seconds[kind] = _build(docker_cli, f"containers/Dockerfile.{kind}", image)
    return images


def docker_run(
    cli: str,
    image: str,
    *command: str,
    user: str | None = None,
    options: tuple[str, ...] = (),
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """`docker run --rm` of one command in `image` (a unique container name, no network)."""
    name = f"simclr-kfp-test-{uuid.uuid4().hex[:12]}"
    args = [cli, "run", "--rm", f"--name={name}", "--network=none"]
    if user:
        args.append(f"--user={user}")
    return subprocess.run(
        [*args, *options, image, *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
