"""The default image tag: the package version plus the source's git commit.

KFP's cache key holds the image *string* (kubeflow/pipelines 2.17.0,
backend/src/v2/cacheutils/cache.go), and Kubernetes pulls a non-`latest` tag only when the
node lacks it (IfNotPresent): a tag that stays the same while the code changes runs old
code and reuses outputs cached by old code. So the tag names the commit, and a work tree
with uncommitted changes gets a hash of those changes too: `0.1.0-g1a2b3c4d5e6f[-dirty-
0123abcd]`. Outside a git checkout (an installed wheel) it is the version alone.

Standard library only: `make images` runs it with the system Python
(`python3 pipelines/simclr_pipeline/source_tag.py`).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

# What goes into the images (containers/Dockerfile.*): a change elsewhere keeps the tag.
IMAGE_SOURCES = ("components", "pipelines", "containers", "pyproject.toml", "constraints.txt")
_ROOT = Path(__file__).resolve().parents[2]


def _git(root: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, timeout=20, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.decode("utf-8", "replace")


def project_version(root: Path = _ROOT) -> str | None:
    try:
        text = (root / "pyproject.toml").read_text()
    except OSError:
        return None
    match = re.search(r'^version = "(.+)"', text, re.M)
    return match.group(1) if match else None


def source_tag(version: str | None = None, root: Path = _ROOT) -> str:
    """`<version>-g<commit>[-dirty-<hash>]` in a git checkout, else `<version>`."""
    version = version or project_version(root) or "0.0.0"
    commit = _git(root, "rev-parse", "--short=12", "HEAD")
    if not commit or not (root / "pipelines").is_dir():
        return version
    tag = f"{version}-g{commit.strip()}"
    changes = _git(root, "diff", "HEAD", "--binary", "--", *IMAGE_SOURCES) or ""
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "--", *IMAGE_SOURCES)
    untracked = untracked or ""
    digest = hashlib.sha256(changes.encode())
    for name in sorted(untracked.split()):
        digest.update(name.encode())
        try:
            digest.update((root / name).read_bytes())
        except OSError:
            pass
    if changes or untracked.strip():
        tag += f"-dirty-{digest.hexdigest()[:8]}"
    return tag


if __name__ == "__main__":
    print(source_tag())
