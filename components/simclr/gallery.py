"""A self-contained HTML page that shows what an encoder learned.

- Retrieval gallery: ``num_queries`` query images (default 16, a seeded sample of the
  query set, e.g. the test split), each with its ``k`` (default 8) nearest neighbours
  (cosine similarity of the features) in the bank (e.g. the train split), one column
  per encoder side by side (the pretrained and the random-init one). With labels, a
  neighbour sharing its query's label is framed green, another red, and each column
  states the share of such neighbours over all queries.
- A 2-D map per encoder: UMAP of the bank features when ``umap-learn`` is installed,
  else PCA (numpy SVD, no extra dependency), one dot per image (a seeded sample of at
  most ``MAP_MAX_POINTS``), coloured by label (grey when unlabelled), as inline SVG;
  ``map_image`` draws the same map as pixels (for TensorBoard).

Images are inlined as PNG data URIs and the page needs no network and no script: it
opens as a file, as a KFP HTML artifact and in a browser's sandbox alike.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from simclr import storage
from simclr.errors import UserError
from simclr.evaluate import l2_normalize

NUM_QUERIES = 16
NUM_NEIGHBOURS = 8
MAP_MAX_POINTS = 2000
MAP_METHODS = ("auto", "pca", "umap")
# matplotlib's tab10, then greys for unlabelled points
_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
_UNLABELLED = "#999999"


def nearest_neighbours(query: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    """int64 [Q, k]: bank rows by decreasing cosine similarity to each query row."""
    sims = (
        l2_normalize(np.asarray(query, np.float32)) @ l2_normalize(np.asarray(bank, np.float32)).T
    )
    k = min(k, bank.shape[0])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1).astype(np.int64)


def pca_2d(features: np.ndarray) -> np.ndarray:
    """float64 [N, 2]: the features projected on their first two principal axes."""
    x = np.asarray(features, np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    axes = vt[:2] if vt.shape[0] >= 2 else np.vstack([vt, np.zeros_like(vt)])[:2]
    return x @ axes.T


def umap_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("umap") is not None


def map_2d(features: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """([N, 2] points, "UMAP" | "PCA"): ``method`` "auto" (UMAP when installed), "pca"
    or "umap" (UserError when not installed)."""
    if method not in MAP_METHODS:
        raise UserError(f"map method must be one of {', '.join(MAP_METHODS)}, got {method!r}")
    use_umap = method == "umap" or (method == "auto" and umap_available())
    if method == "umap" and not umap_available():
        raise UserError("the UMAP map needs umap-learn (pip install umap-learn)")
    if not use_umap or len(features) < 4:  # UMAP needs a few neighbours
        return pca_2d(features), "PCA"
    import umap

    reducer = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(features) - 1))
    return np.asarray(reducer.fit_transform(np.asarray(features, np.float32)), np.float64), "UMAP"


def map_image(points: np.ndarray, labels: np.ndarray, size: int = 360) -> np.ndarray:
    """uint8 [size, size, 3]: the 2-D map as pixels (3x3 dots, the page's colours)."""
    image = np.full((size, size, 3), 255, np.uint8)
    lo, hi = points.min(axis=0), points.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    xy = np.round(4 + (points - lo) / span * (size - 9)).astype(int)
    for (x, y), label in zip(xy, labels, strict=True):
        rgb = [int(_colour(int(label))[i : i + 2], 16) for i in (1, 3, 5)]
        image[size - 1 - y - 1 : size - 1 - y + 2, x - 1 : x + 2] = rgb
    return image


def png_data_uri(image: np.ndarray) -> str:
    """A uint8 [H, W, 3] image as a ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _colour(label: int) -> str:
    return _PALETTE[label % len(_PALETTE)] if label >= 0 else _UNLABELLED


def _label_name(label: int, class_names: Sequence[str]) -> str:
    if label < 0:
        return "unlabelled"
    return class_names[label] if label < len(class_names) else str(label)


def _img(uri: str, css: str, title: str, index: int, extra: str = "") -> str:
    return (
        f'<img class="{css}" src="{uri}" alt="{html.escape(title)}" '
        f'title="{html.escape(title)}" data-index="{index}"{extra}>'
    )


def _scatter_svg(
    points: np.ndarray, labels: np.ndarray, name: str, method: str, size: int = 360
) -> str:
    lo, hi = points.min(axis=0), points.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    xy = 8 + (points - lo) / span * (size - 16)
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{size - y:.1f}" r="2.2" fill="{_colour(int(c))}"/>'
        for (x, y), c in zip(xy, labels, strict=True)
    )
    return (
        f'<svg class="pca-map" data-encoder="{html.escape(name)}" width="{size}" '
        f'height="{size}" viewBox="0 0 {size} {size}" role="img" '
        f'aria-label="{method} map ({html.escape(name)})"><rect width="100%" height="100%" '
        f'fill="#fff" stroke="#ccc"/>{dots}</svg>'
    )


def retrieval_grid(
    query_images: np.ndarray, bank_images: np.ndarray, neighbours: np.ndarray, gap: int = 2
) -> np.ndarray:
    """uint8 [rows*(H+gap), (1+k)*(W+gap)+gap, 3]: each row a query, a gap, its neighbours
    (for ``tf.summary.image``; ``neighbours`` as ``nearest_neighbours`` returns them)."""
    q, k = neighbours.shape
    h, w = query_images.shape[1:3]
    grid = np.full((q * (h + gap), (k + 1) * (w + gap) + gap, 3), 255, np.uint8)
    for row in range(q):
        top = row * (h + gap)
        grid[top : top + h, :w] = query_images[row]
        for j, index in enumerate(neighbours[row]):
            left = (j + 1) * (w + gap) + gap
            grid[top : top + h, left : left + w] = bank_images[index]
    return grid


def write_gallery_html(
    uri: str,
    *,
    query_images: np.ndarray,
    bank_images: np.ndarray,
    query_features: Mapping[str, np.ndarray],
    bank_features: Mapping[str, np.ndarray],
    query_labels: np.ndarray | None = None,
    bank_labels: np.ndarray | None = None,
    class_names: Sequence[str] = (),
    num_queries: int = NUM_QUERIES,
    k: int = NUM_NEIGHBOURS,
    seed: int = 0,
    title: str = "What the encoder learned",
    map_method: str = "auto",
) -> dict[str, Any]:
    """Writes the page to ``uri`` (local, gs:// or s3://); returns a summary dict.

    ``query_features`` / ``bank_features``: encoder name -> features [Q, D] / [N, D] of
    ``query_images`` / ``bank_images`` (uint8 [., H, W, 3]), e.g. {"pretrained": ...,
    "random_init": ...}, shown in that order. Labels are optional (-1 = unlabelled).
    The summary: queries (their indices), k, ``map_method`` ("UMAP" or "PCA", see
    ``map_2d``), ``map_points`` (bank indices on the map) and per encoder the neighbour
    indices, ``map`` (the 2-D points) and, with labels, ``label_agreement`` (share of
    neighbours with their query's label).
    """
    names = list(query_features)
    if not names or set(names) != set(bank_features):
        raise UserError("the gallery needs the same encoders for the queries and the bank")
    nq, nb = len(query_images), len(bank_images)
    for name in names:
        if len(query_features[name]) != nq or len(bank_features[name]) != nb:
            raise UserError(f"gallery: features of {name!r} do not match the images")
    if nq == 0 or nb == 0:
        raise UserError("the gallery needs at least one query and one bank image")
    q_labels = np.full(nq, -1) if query_labels is None else np.asarray(query_labels)
    b_labels = np.full(nb, -1) if bank_labels is None else np.asarray(bank_labels)
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(nq, min(num_queries, nq), replace=False))
    labelled = bool((q_labels[queries] >= 0).any())
    summary: dict[str, Any] = {"queries": queries.tolist(), "k": min(k, nb), "encoders": {}}
    map_keep = np.sort(rng.permutation(nb)[:MAP_MAX_POINTS])
    summary["map_points"] = map_keep

    uris: dict[tuple[str, int], str] = {}

    def uri_of(kind: str, index: int) -> str:
        if (kind, index) not in uris:
            images = query_images if kind == "q" else bank_images
            uris[(kind, index)] = png_data_uri(images[index])
        return uris[(kind, index)]

    columns = []
    for name in names:
        neighbours = nearest_neighbours(query_features[name][queries], bank_features[name], k)
        agree = b_labels[neighbours] == q_labels[queries][:, None]
        info: dict[str, Any] = {"neighbours": neighbours.tolist()}
        if labelled:
            info["label_agreement"] = float(np.mean(agree))
        summary["encoders"][name] = info
        rows = []
        for row, query in enumerate(queries):
            label = int(q_labels[query])
            cells = [
                '<td class="query">'
                + _img(uri_of("q", query), "query", _label_name(label, class_names), query)
                + "</td>"
            ]
            for j, n in enumerate(neighbours[row]):
                hit = ""
                if labelled and label >= 0:
                    hit = f' data-same-label="{int(agree[row, j])}"'
                name_j = _label_name(int(b_labels[n]), class_names)
                cells.append(
                    '<td class="neighbour">'
                    + _img(uri_of("b", int(n)), "neighbour", name_j, int(n), hit)
                    + "</td>"
                )
            rows.append(f'<tr class="query-row">{"".join(cells)}</tr>')
        stat = (
            f"<p>Neighbours with their query's label: {info['label_agreement']:.1%}</p>"
            if labelled
            else ""
        )
        points, method = map_2d(bank_features[name][map_keep], map_method, seed)
        info["map"] = points
        summary["map_method"] = method
        columns.append(
            f'<section class="encoder" data-encoder="{html.escape(name)}">'
            f"<h2>{html.escape(name)}</h2>{stat}"
            f'<table class="retrieval"><tr><th>query</th><th colspan="{min(k, nb)}">'
            f"{min(k, nb)} nearest in the bank</th></tr>{''.join(rows)}</table>"
            f"<h3>{method} of {len(map_keep)} bank embeddings</h3>"
            f"{_scatter_svg(points, b_labels[map_keep], name, method)}</section>"
        )
    legend = "".join(
        f'<span class="key"><span class="dot" style="background:{_colour(i)}"></span>'
        f"{html.escape(str(c))}</span>"
        for i, c in enumerate(class_names)
    )
    page = _PAGE.format(
        title=html.escape(title),
        intro=html.escape(
            f"{len(queries)} query images, each with its {min(k, nb)} nearest neighbours "
            f"(cosine similarity) among {nb} bank images; encoders side by side."
        ),
        legend=f'<p class="legend">{legend}</p>' if legend else "",
        columns="".join(columns),
    )
    storage.write_text(uri, page)
    summary["bytes"] = len(page.encode())
    return summary


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 16px; color: #222; }}
.columns {{ display: flex; gap: 32px; align-items: flex-start; flex-wrap: wrap; }}
table.retrieval {{ border-collapse: collapse; }}
td {{ padding: 1px; }}
td.query {{ padding-right: 10px; }}
img {{ width: 48px; height: 48px; image-rendering: pixelated; display: block;
       border: 2px solid transparent; }}
img.query {{ border-color: #333; }}
img[data-same-label="1"] {{ border-color: #2ca02c; }}
img[data-same-label="0"] {{ border-color: #d62728; }}
.key {{ margin-right: 12px; white-space: nowrap; }}
.dot {{ display: inline-block; width: 10px; height: 10px; border-radius: 5px;
        margin-right: 4px; }}
</style></head>
<body><h1>{title}</h1><p>{intro}</p>{legend}
<div class="columns">{columns}</div></body></html>
"""
