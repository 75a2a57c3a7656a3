"""What the KFP UI shows of a task: its Metrics artifact (flat numbers) and HTML pages
with their images inlined (the UI cannot follow links to files beside them)."""

import base64
import html
import os
from collections.abc import Mapping
from typing import Any


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict, keys joined with '_' (Metrics artifacts are flat)."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, prefix=f"{name}_"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


# Echoed configuration, not results: kept in the task's metrics.json, not in the UI.
_NOT_METRICS = ("settings", "config")


def log_metrics(artifact: Any, metrics: Mapping[str, Any]) -> None:
    results = {k: v for k, v in metrics.items() if k not in _NOT_METRICS}
    for name, value in sorted(flatten_metrics(results).items()):
        artifact.log_metric(name, value)


def images_html(title: str, images: Mapping[str, str]) -> str:
    """A standalone HTML page embedding PNG files as base64 (renders in the KFP UI)."""
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"]
    parts.append(f"<h2>{html.escape(title)}</h2>")
    for caption, path in images.items():
        if not os.path.exists(path):
            continue
        with open(path, "rb") as f:
            data = base64.b64encode(f.read()).decode("ascii")
        parts.append(
            f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'/>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def inline_images(markdown: str, base_dir: str) -> str:
    """Replaces `](name.png)` links to files in base_dir by data URIs (the UI has no base_dir)."""
    for name in sorted(os.listdir(base_dir)):
        if name.endswith(".png") and f"]({name})" in markdown:
            with open(os.path.join(base_dir, name), "rb") as f:
                data = base64.b64encode(f.read()).decode("ascii")
            markdown = markdown.replace(f"]({name})", f"](data:image/png;base64,{data})")
    return markdown
