"""The files an evaluation writes to its output directory, and its TensorBoard images.

Written atomically, ``metrics.json`` last (``storage.atomic_dir``): ``confusion_matrix.json``
and ``.png`` (labelled data), ``embedding.png``, ``gallery.html`` (``simclr.gallery``;
unless the config says ``gallery=False``) and ``report.md`` (``simclr.report``). Each
encoder is described by an object with ``result`` (``simclr.evaluate.EncoderResult``),
``test_features`` and ``train_features``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from simclr import evaluate as ev
from simclr import gallery, storage
from simclr import report as rp

METRICS_FILE = "metrics.json"
CONFUSION_JSON = "confusion_matrix.json"
CONFUSION_PNG = "confusion_matrix.png"
EMBEDDING_PNG = "embedding.png"
REPORT_MD = "report.md"
GALLERY_HTML = "gallery.html"
METHOD_NAMES = {"tsne": "t-SNE", "pca": "PCA"}


def write_outputs(
    config: Any, metrics: dict[str, Any], eval_data: ev.EvalData, encoders: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Writes every file to ``config.output_dir`` (metrics.json last, after adding the
    gallery's summary to ``metrics["settings"]``); returns the TensorBoard images
    (tag -> uint8 [H, W, 3])."""
    result = encoders["pretrained"].result
    confusion = confusion_from(eval_data, result) if result.predictions else None
    points, labels = _embedding(encoders["pretrained"].test_features, eval_data.test_labels, config)
    images: dict[str, np.ndarray] = {}
    with storage.atomic_dir(config.output_dir, last=(METRICS_FILE,)) as staging:
        if confusion is not None:
            with open(os.path.join(staging, CONFUSION_JSON), "w") as f:
                json.dump(confusion, f, indent=2)
            rp.save_confusion_png(
                np.asarray(confusion["matrix"]),
                eval_data.class_names,
                os.path.join(staging, CONFUSION_PNG),
                f"Confusion matrix ({confusion['protocol']})",
            )
        rp.save_embedding_png(
            points,
            labels,
            eval_data.class_names,
            os.path.join(staging, EMBEDDING_PNG),
            f"Test-set embedding ({METHOD_NAMES[config.embedding]}, {len(labels)} images)",
        )
        if config.gallery:
            summary = _write_gallery(
                os.path.join(staging, GALLERY_HTML), eval_data, encoders, config
            )
            images = gallery_images(summary, eval_data)
            metrics["settings"]["gallery"] = {
                "file": GALLERY_HTML,
                "queries": len(summary["queries"]),
                "k": summary["k"],
                "map_method": summary["map_method"],
                **{
                    f"label_agreement_{name}": info["label_agreement"]
                    for name, info in summary["encoders"].items()
                    if "label_agreement" in info
                },
            }
        text = rp.render_report(
            metrics,
            class_names=eval_data.class_names,
            confusion=confusion,
            embedding_png=EMBEDDING_PNG,
            confusion_png=CONFUSION_PNG if confusion is not None else None,
            settings=metrics["settings"],
            gallery_html=GALLERY_HTML if config.gallery else None,
        )
        with open(os.path.join(staging, REPORT_MD), "w") as f:
            f.write(text)
        with open(os.path.join(staging, METRICS_FILE), "w") as f:
            json.dump(metrics, f, indent=2, sort_keys=True)
    return images


def confusion_from(eval_data: ev.EvalData, result: ev.EncoderResult) -> dict[str, Any]:
    """confusion_matrix.json's content: from the linear probe, else kNN, else the largest
    fine-tuning fraction."""
    ordered = ["linear", "knn"] + sorted(
        (k for k in result.predictions if k.startswith("finetune_")),
        key=lambda k: -float(k.split("_")[-1]),
    )
    protocol = next(p for p in ordered if p in result.predictions)
    matrix = ev.confusion_matrix(
        eval_data.test_labels, result.predictions[protocol], eval_data.num_classes
    )
    return {
        "class_names": eval_data.class_names,
        "matrix": matrix.tolist(),
        "per_class_accuracy": ev.per_class_accuracy(matrix),
        "protocol": protocol,
    }


def _write_gallery(
    path: str, eval_data: ev.EvalData, encoders: Mapping[str, Any], config: Any
) -> dict[str, Any]:
    labelled = bool(eval_data.class_names)
    return gallery.write_gallery_html(
        path,
        query_images=eval_data.test_images,
        bank_images=eval_data.train_images,
        query_features={name: e.test_features for name, e in encoders.items()},
        bank_features={name: e.train_features for name, e in encoders.items()},
        query_labels=eval_data.test_labels if labelled else None,
        bank_labels=eval_data.train_labels if labelled else None,
        class_names=eval_data.class_names,
        num_queries=int(config.gallery_queries),
        k=int(config.gallery_neighbours),
        seed=int(config.seed),
        title=f"What the encoder learned: {config.model_dir}",
    )


def gallery_images(summary: dict[str, Any], eval_data: ev.EvalData) -> dict[str, np.ndarray]:
    """TensorBoard images: per encoder the retrieval grid and the 2-D map."""
    queries = eval_data.test_images[summary["queries"]]
    labels = eval_data.train_labels if eval_data.class_names else None
    out = {}
    for name, info in summary["encoders"].items():
        neighbours = np.asarray(info["neighbours"])
        out[f"eval/gallery/{name}"] = gallery.retrieval_grid(
            queries, eval_data.train_images, neighbours
        )
        shown = summary["map_points"]
        map_labels = labels[shown] if labels is not None else np.full(len(shown), -1)
        out[f"eval/map/{name}"] = gallery.map_image(info["map"], map_labels)
    return out


def _embedding(features: np.ndarray, labels: np.ndarray, config: Any):
    """2-D points of a seeded sample of at most ``config.embedding_max_points``."""
    rng = np.random.default_rng(int(config.seed))
    keep = np.sort(rng.permutation(len(labels))[: int(config.embedding_max_points)])
    return rp.embed_2d(features[keep], config.embedding, int(config.seed)), labels[keep]
