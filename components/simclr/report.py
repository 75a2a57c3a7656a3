"""Evaluation report: confusion-matrix and embedding plots, and the Markdown summary.

Plots use matplotlib's Agg backend (no display) and a fixed canvas, so the PNG sizes
are known: ``CONFUSION_PNG_SIZE`` and ``EMBEDDING_PNG_SIZE`` (width, height) pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from simclr.evaluate import blas_threads

_DPI = 100
CONFUSION_PNG_SIZE = (800, 700)
EMBEDDING_PNG_SIZE = (900, 700)

# Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
# Representations", appendix B.9 (CIFAR-10): the figure our numbers compare with.
PUBLISHED_REFERENCE = (
    "SimCLR (Chen et al., 2020) reports **94.0%** linear-probe top-1 on CIFAR-10 "
    "with a ResNet-50 pretrained for 1000 epochs at batch size 1024."
)

# simclr.quality's figures: key -> (row label, value format)
LABEL_FREE = {
    "alignment": ("Alignment (views' distance², lower = closer)", "{:.3f}"),
    "uniformity": ("Uniformity (log-mean Gaussian potential, lower = spread)", "{:.3f}"),
    "effective_rank": ("Effective rank (1 = collapse)", "{:.1f}"),
    "view_retrieval_top1": ("Own-view retrieval top-1", "{:.2%}"),
}

METRIC_LABELS = {
    "knn_top1": "kNN top-1 (k=200)",
    "knn_top5": "kNN top-5",
    "linear_top1": "Linear probe top-1",
    "linear_top5": "Linear probe top-5",
}


def _figure(size_px: tuple[int, int]):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    # A bare Figure (no pyplot): no global state, safe in threads and repeated calls.
    return Figure(figsize=(size_px[0] / _DPI, size_px[1] / _DPI), dpi=_DPI)


def save_confusion_png(
    matrix: np.ndarray, class_names: Sequence[str], path: str, title: str
) -> None:
    """Row-normalised heat map with the raw counts written in the cells."""
    fig = _figure(CONFUSION_PNG_SIZE)
    ax = fig.add_subplot()
    totals = np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(matrix / totals, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, labels=class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (i, j), count in np.ndenumerate(matrix):
        share = matrix[i, j] / totals[i, 0]
        ax.text(
            j,
            i,
            str(count),
            ha="center",
            va="center",
            fontsize=7,
            color="white" if share > 0.5 else "black",
        )
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)


def embed_2d(features: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """[N, D] -> [N, 2] by PCA, or t-SNE (after PCA to 50 dims, the usual speed-up)."""
    x = features.astype(np.float64)
    with blas_threads(x.size):
        if method == "pca" or len(x) < 5:
            return PCA(n_components=2, random_state=seed).fit_transform(_pad_dims(x, 2))
        x = PCA(n_components=min(50, *x.shape), random_state=seed).fit_transform(x)
        perplexity = float(min(30.0, (len(x) - 1) / 3))
        return TSNE(
            n_components=2, init="pca", perplexity=perplexity, random_state=seed
        ).fit_transform(x)


def _pad_dims(x: np.ndarray, dims: int) -> np.ndarray:
    return x if x.shape[1] >= dims else np.pad(x, ((0, 0), (0, dims - x.shape[1])))


def save_embedding_png(
    points: np.ndarray, labels: np.ndarray, class_names: Sequence[str], path: str, title: str
) -> None:
    """Scatter of 2-D points coloured by class, with a legend (grey, no legend, when
    there are no class names: unlabelled data)."""
    fig = _figure(EMBEDDING_PNG_SIZE)
    ax = fig.add_subplot()
    cmap = _colormap(len(class_names))
    for c, name in enumerate(class_names):
        mask = labels == c
        ax.scatter(points[mask, 0], points[mask, 1], s=6, color=cmap(c), label=name, alpha=0.8)
    if not class_names:
        ax.scatter(points[:, 0], points[:, 1], s=6, color="#777777", alpha=0.8)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if class_names:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)


def _colormap(n: int):
    import matplotlib

    return matplotlib.colormaps["tab10" if n <= 10 else "tab20"]


# --------------------------------------------------------------------------- Markdown


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def _label(key: str) -> str:
    if key.startswith("finetune_top1_"):
        return f"Fine-tune top-1 ({_pct(float(key.rsplit('_', 1)[1]))} labels)".replace(".00%", "%")
    return METRIC_LABELS.get(key, key)


def metrics_table(metrics: dict[str, Any], baseline: dict[str, float] | None) -> list[str]:
    keys = [k for k in metrics if k in METRIC_LABELS or k.startswith("finetune_top1_")]
    if baseline is None:
        rows = ["| Protocol | Pretrained |", "| --- | ---: |"]
        return rows + [f"| {_label(k)} | {_pct(metrics[k])} |" for k in keys]
    rows = ["| Protocol | Pretrained | Random init | Difference |", "| --- | ---: | ---: | ---: |"]
    for k in keys:
        base = baseline.get(k)
        diff = "—" if base is None else f"{100 * (metrics[k] - base):+.2f} pts"
        rows.append(f"| {_label(k)} | {_pct(metrics[k])} | {_pct(base)} | {diff} |")
    return rows


def label_free_section(metrics: dict[str, Any], baseline: dict[str, Any] | None) -> list[str]:
    """The label-free figures (simclr.quality), pretrained beside random init."""
    keys = [k for k in LABEL_FREE if k in metrics]
    if not keys:
        return []
    base = baseline if baseline and any(k in baseline for k in keys) else None
    head = "| Label-free figure | Pretrained |" + (" Random init |" if base else "")
    rows = ["## Label-free quality", "", head, "| --- | ---: |" + (" ---: |" if base else "")]
    for k in keys:
        label, fmt = LABEL_FREE[k]
        row = f"| {label} | {fmt.format(metrics[k])} |"
        if base:
            row += f" {fmt.format(base[k]) if k in base else '—'} |"
        rows.append(row)
    return rows + [
        "",
        "Wang & Isola (2020) alignment and uniformity, Roy & Vetterli (2007) effective rank, "
        "and the share of augmented views whose nearest view is their own image's other "
        "view; no labels needed. Read alignment beside uniformity: a collapsed encoder "
        "aligns perfectly.",
        "",
    ]


def render_report(
    metrics: dict[str, Any],
    *,
    class_names: Sequence[str],
    confusion: dict[str, Any] | None,
    embedding_png: str | None,
    confusion_png: str | None,
    settings: dict[str, Any],
    gallery_html: str | None = None,
) -> str:
    """The Markdown report (report.md)."""
    encoder = metrics.get("encoder", {})
    lines = [
        "# SimCLR evaluation report",
        "",
        f"- Model: `{metrics.get('model_dir', '?')}` — {encoder.get('encoder', '?')}, "
        f"width ×{encoder.get('width_multiplier', '?')}, {encoder.get('feature_dim', '?')}-d features"
        + (
            f", {metrics['pretrain_steps']} pretraining steps"
            if "pretrain_steps" in metrics
            else ""
        ),
        f"- Data: `{metrics.get('data_dir', '?')}` — {metrics.get('num_train', '?')} train / "
        f"{metrics.get('num_test', '?')} test examples used",
        "",
        "## Results",
        "",
    ]
    table = metrics_table(metrics, metrics.get("baseline"))
    if len(table) > 2:  # more than header and rule: a protocol ran (not so without labels)
        lines += [*table, ""]
    if "baseline" in metrics:
        lines += [
            "Random init: the same architecture with freshly initialised weights "
            f"(seed {settings.get('seed', 0)}), evaluated the same way.",
            "",
        ]
    skipped = settings.get("protocols_skipped") or []
    if skipped:
        lines += [
            f"No labels in the data: {', '.join(skipped)} need labels and were skipped.",
            "",
        ]
    lines += label_free_section(metrics, metrics.get("baseline"))
    if gallery_html:
        lines += [
            f"Retrieval gallery and 2-D maps (pretrained beside random init): [{gallery_html}]"
            f"({gallery_html})",
            "",
        ]
    lines += [f"Reference: {PUBLISHED_REFERENCE}", ""]
    if confusion is not None:
        lines += _per_class_section(confusion, class_names, confusion_png)
    if embedding_png:
        lines += [
            "## Embedding of the test set",
            "",
            f"![2-D embedding of the test features, coloured by class]({embedding_png})",
            "",
        ]
    lines += ["## Settings", "", "| setting | value |", "| --- | --- |"]
    lines += [f"| {k} | `{v}` |" for k, v in sorted(settings.items())]
    return "\n".join(lines) + "\n"


def _per_class_section(
    confusion: dict[str, Any], class_names: Sequence[str], png: str | None
) -> list[str]:
    matrix = np.asarray(confusion["matrix"])
    lines = [
        f"## Per-class accuracy ({confusion['protocol']} protocol)",
        "",
        "| class | accuracy | test examples |",
        "| --- | ---: | ---: |",
    ]
    for name, acc, total in zip(
        class_names, confusion["per_class_accuracy"], matrix.sum(axis=1), strict=True
    ):
        lines.append(f"| {name} | {_pct(acc)} | {int(total)} |")
    lines.append("")
    if png:
        lines += [f"![confusion matrix]({png})", ""]
    return lines
