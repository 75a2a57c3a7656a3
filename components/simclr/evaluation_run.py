"""One evaluation run: the encoder and its random-init baseline, scored and described.

``run(config)`` takes the evaluate task's validated config (``simclr.tasks.evaluate``:
``protocols``, ``baseline_protocols`` and ``label_fractions`` tuples), loads the data
(``simclr.eval_inputs``) before the encoder (bad data fails in seconds), runs the
protocols (``simclr.evaluate``) and the label-free figures (``simclr.quality``) for each
encoder, assembles metrics.json, writes the files (``simclr.eval_outputs``) and, with a
``tensorboard_dir``, the scalars and gallery images (``simclr.monitor.SummaryLogger``,
run ``eval`` at the pretraining step).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import keras
import numpy as np

from simclr import data, eval_inputs, eval_outputs, storage
from simclr import evaluate as ev
from simclr.errors import UserError
from simclr.eval_options import PROTOCOL_NAMES
from simclr.model import ENCODERS, build_encoder, load_encoder, make_image_encoder
from simclr.monitor import SummaryLogger
from simclr.quality import label_free_quality

_log = logging.getLogger(__name__)

LABEL_FREE_KEYS = ("alignment", "uniformity", "effective_rank", "view_retrieval_top1")
PRETRAIN_METRICS = "metrics.json"  # pretrain's, beside (or above) the encoder


@dataclass
class Evaluated:
    """One encoder's results: protocol metrics + label-free figures, and its features."""

    metrics: dict[str, Any]
    result: ev.EncoderResult
    test_features: np.ndarray
    train_features: np.ndarray | None
    label_free_images: int


def run(config: Any) -> dict[str, Any]:
    """Evaluates the encoder; writes the output files; returns metrics.json's content."""
    start = time.perf_counter()
    config, manifest = eval_inputs.evaluation_dataset(config, data.load_manifest(config.data_dir))
    labelled = data.is_labelled(manifest)
    requested = list(config.protocols)
    protocols = requested if labelled else []
    if not labelled:
        _log.warning(
            "%s has no labels: skipping %s (they need labels); reporting the label-free "
            "figures and the gallery",
            config.data_dir,
            ", ".join(PROTOCOL_NAMES[p] for p in requested),
        )
    baseline_protocols = [p for p in config.baseline_protocols if p in protocols]
    subset_keys = eval_inputs.subset_keys(config, manifest) if "finetune" in protocols else []
    # Data before the model: bad data fails in seconds, without loading the encoder.
    eval_data = eval_inputs.load_data(config, manifest, subset_keys, labelled)
    model, model_config = load_encoder(config.model_dir)
    _check_input_size(model, eval_data, config)
    _log.info("evaluating %s: %s", config.model_dir, ", ".join(protocols) or "label-free only")
    encoders = {
        "pretrained": _evaluate_one(
            model, pretrained_factory(model), eval_data, protocols, subset_keys, config
        )
    }
    if config.baseline == "random_init":
        factory = random_init_factory(model_config, config.model_dir, int(config.seed))
        _log.info("random-init baseline: %s", ", ".join(baseline_protocols) or "label-free only")
        encoders["random_init"] = _evaluate_one(
            factory(), factory, eval_data, baseline_protocols, subset_keys, config
        )
    metrics: dict[str, Any] = dict(encoders["pretrained"].metrics)
    if "random_init" in encoders:
        metrics["baseline"] = encoders["random_init"].metrics
    metrics.update(
        _run_info(
            config,
            model_config,
            eval_data,
            protocols,
            baseline_protocols if "random_init" in encoders else [],
            encoders["pretrained"].result.details,
        )
    )
    metrics["labelled"] = labelled
    metrics["settings"]["protocols_skipped"] = [p for p in requested if p not in protocols]
    metrics["settings"]["label_free_num_images"] = encoders["pretrained"].label_free_images
    images = eval_outputs.write_outputs(config, metrics, eval_data, encoders)
    if config.tensorboard_dir:  # after metrics.json: checked writable before any work
        _log_tensorboard(config.tensorboard_dir, metrics, images)
    _log.info(
        "evaluation done in %.1fs: %s",
        time.perf_counter() - start,
        {k: v for k, v in metrics.items() if isinstance(v, float)},
    )
    return metrics


def pretrained_factory(model):
    """Fresh in-memory copies of the loaded model (fine-tuning trains them, not it)."""

    def make():
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        return copy

    return make


def random_init_factory(model_config: dict[str, Any], model_dir: str, seed: int):
    """Randomly initialised encoders of config.json's architecture, the same every call."""
    name, width = model_config.get("encoder"), model_config.get("width_multiplier")
    if name not in ENCODERS or not width:
        raise UserError(
            f"{model_dir}: config.json lacks a known encoder/width_multiplier "
            f"({name!r}, {width!r}) to build the random-init baseline; "
            "use --baseline=none"
        )

    def make():
        keras.utils.set_random_seed(seed)  # the same random weights every time
        return make_image_encoder(build_encoder(name, float(width)))

    return make


def _check_input_size(model, eval_data: ev.EvalData, config: Any) -> None:
    want, have = tuple(model.inputs[0].shape[1:3]), eval_data.test_images.shape[1:3]
    if want != have:
        raise UserError(
            f"{config.data_dir} holds {have[0]}x{have[1]} images, the encoder at "
            f"{config.model_dir} takes {want[0]}x{want[1]}"
        )


def _evaluate_one(
    frozen, factory, eval_data: ev.EvalData, protocols, subset_keys, config: Any
) -> Evaluated:
    """The protocols (if any), then the label-free figures on the test images (their
    clean features shared with kNN/linear); train features too when the gallery needs them."""
    result = ev.EncoderResult({}, {}, None)
    if protocols:  # config is an EvalOptions: the protocols read their own fields
        result = ev.evaluate_encoder(
            factory, eval_data, protocols, config, label_fractions=subset_keys, frozen_model=frozen
        )
    test_features = result.test_features
    if test_features is None:  # fine-tuning only, or no labels: still plotted and measured
        test_features = ev.extract_features(frozen, eval_data.test_images, config.batch_size)
    train_features = result.train_features
    if train_features is None and config.gallery:
        train_features = ev.extract_features(frozen, eval_data.train_images, config.batch_size)
    quality = label_free_quality(
        frozen,
        eval_data.test_images,
        features=test_features,
        seed=int(config.seed),
        batch_size=config.batch_size,
        max_images=int(config.label_free_max_images),
    )
    metrics = {**result.metrics, **{k: quality[k] for k in LABEL_FREE_KEYS}}
    return Evaluated(metrics, result, test_features, train_features, quality["num_images"])


def _run_info(
    config, model_config, eval_data, protocols, baseline_protocols, details
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "num_train": int(len(eval_data.train_labels)),
        "num_test": int(len(eval_data.test_labels)),
        "encoder": {k: model_config.get(k) for k in ("encoder", "width_multiplier", "feature_dim")},
        "model_dir": config.model_dir,
        "data_dir": config.data_dir,
        "settings": {
            **{
                k: list(v) if isinstance(v, tuple) else v  # as metrics.json will hold it
                for k, v in asdict(config).items()
                if k not in ("data_dir", "model_dir", "output_dir")
            },
            "protocols_run": list(protocols),
            "baseline_protocols_run": list(baseline_protocols),
            **details,
        },
    }
    steps = _pretrain_steps(config.model_dir)
    if steps is not None:
        info["pretrain_steps"] = steps
    return info


def _pretrain_steps(model_dir: str) -> int | None:
    """The global step from pretrain's metrics.json beside (or above) the encoder."""
    parent = (
        model_dir.rstrip("/").rsplit("/", 1)[0]
        if storage.is_remote(model_dir)
        else os.path.dirname(os.path.abspath(model_dir))
    )
    for directory in (model_dir, parent):
        uri = storage.join(directory, PRETRAIN_METRICS)
        if storage.exists(uri):
            try:
                steps = storage.read_json(uri).get("steps")
            except (UserError, AttributeError):
                continue
            if isinstance(steps, int):
                return steps
    return None


def scalar_tags(metrics: dict[str, Any]) -> dict[str, float]:
    """TensorBoard tag -> value: eval/<key> and eval/baseline/<key>."""
    tags = {f"eval/{k}": float(v) for k, v in metrics.items() if _is_metric(k, v)}
    for k, v in (metrics.get("baseline") or {}).items():
        tags[f"eval/baseline/{k}"] = float(v)
    return tags


def _is_metric(key: str, value: Any) -> bool:
    return isinstance(value, float) and (
        key.endswith(("_top1", "_top5")) or "_top1_" in key or key in LABEL_FREE_KEYS
    )


def _log_tensorboard(
    tensorboard_dir: str, metrics: dict[str, Any], images: dict[str, np.ndarray]
) -> None:
    """The scalars and ``images`` (tag -> uint8 [H, W, 3]) to run ``eval`` under
    ``tensorboard_dir``, at the pretraining step (uploaded for gs:// and s3://)."""
    logger = SummaryLogger(storage.join(tensorboard_dir, "eval"), sync_seconds=60.0)
    step = metrics.get("pretrain_steps") or 0
    try:
        logger.scalars(step, scalar_tags(metrics))
        for tag, image in images.items():
            logger.images(step, tag, np.asarray(image, np.uint8)[None])
    finally:
        logger.close()
