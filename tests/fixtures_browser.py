"""Headless Chromium for the HTML artifacts (Debian's `chromium` package; .ci/run installs it).

- `chromium()`: the browser's path; without one the test is skipped, or under CI=true
  it fails (the gallery must really be rendered in CI).
- `screenshot(page, png, width, height)`: renders a local HTML file and returns the
  screenshot as uint8 [H, W, 3]; Chromium's console errors fail the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

__all__ = ["chromium", "screenshot"]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        reason = "chromium is not installed (apt-get install -y --no-install-recommends chromium)"
        if _in_ci():
            pytest.fail(f"CI=true: the browser tests must run, but {reason}", pytrace=False)
        pytest.skip(reason)
    return path


def screenshot(page: Path, png: Path, width: int = 1400, height: int = 1600) -> np.ndarray:
    from PIL import Image

    proc = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0 and png.is_file(), proc.stderr[-2000:]
    # the page's own errors (a broken image, a script error) reach the console log
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    return np.asarray(Image.open(png).convert("RGB"))
