"""evaluate: how good are the representations? kNN, linear probe, fine-tuning.

    python -m simclr.tasks.evaluate --data_dir=DIR --model_dir=DIR --output_dir=DIR
        [--protocols=knn,linear,finetune] [--baseline=random_init|none]
        [--baseline_protocols=knn,linear] [--label_fractions=0.01,0.1]
        [--max_train_examples=N] [--max_test_examples=N] [--tensorboard_dir=URI] ...

``--model_dir`` is pretrain's ``--output_dir`` or the ``encoder/`` inside it. Every
directory may be local, gs:// or s3://. Protocols are described in ``simclr.evaluate``.

Baseline rule: ``--baseline=random_init`` (the default) evaluates a randomly
initialised encoder of the same architecture (``config.json``: encoder, width;
weights from ``--seed``) with the protocols in both ``--protocols`` and
``--baseline_protocols``. The default ``knn,linear`` keeps it cheap (one more
inference pass over the data); add ``finetune`` for a from-scratch supervised
baseline at the cost of training it.

Label-free figures (``simclr.quality``: alignment, uniformity, effective rank, own-view
retrieval) are computed for every dataset, on a seeded sample of at most
``--label_free_max_images`` test images, for the encoder and its random-init baseline.

Data without labels (an image dataset whose manifest says ``"labelled": false``): the
protocols need labels, so evaluate logs one line naming the skipped ones and reports
the label-free figures and the gallery only; the run succeeds. ``--data_dir`` may be
prepare_data's CIFAR-10 layout (manifest format_version 1) or an image dataset
(format_version 2, ``simclr.images``; decoded and centre-cropped as the SavedModel
does, at the encoder's input size). Without a test split, a seeded tenth of train
(at most 1,000 images) is held out as the queries. A dataset prepared with
``--eval_source`` says so in its manifest's ``evaluation`` entry: evaluate then scores
on that labelled dataset (``DIR/eval/``), not on the training images.

Files written to ``--output_dir`` (atomically, ``metrics.json`` last):

- ``metrics.json``: ``knn_top1``, ``knn_top5``, ``linear_top1``, ``linear_top5``,
  ``finetune_top1_<fraction>`` (only the protocols run; fractions in [0, 1]),
  ``alignment``, ``uniformity``, ``effective_rank``, ``view_retrieval_top1``,
  ``baseline`` (the same keys, when a baseline ran), ``labelled``, ``num_train``,
  ``num_test``, ``encoder`` ({encoder, width_multiplier, feature_dim}),
  ``pretrain_steps`` (when the model dir has pretrain's metrics.json), ``model_dir``,
  ``data_dir``, ``settings`` (with ``protocols_skipped``, ``label_free_num_images``,
  ``gallery`` {queries, k, map_method, label_agreement per encoder}).
- ``confusion_matrix.json`` (labelled data only): ``{"class_names", "matrix" (rows:
  true class, columns: predicted), "per_class_accuracy", "protocol"}``, from the linear
  probe (else kNN, else the largest fine-tuning fraction); for KFP's
  ``log_confusion_matrix``; and ``confusion_matrix.png``.
- ``embedding.png`` (2-D t-SNE or PCA of the test features, coloured by class) and
  ``report.md`` (which references them and the gallery).
- ``gallery.html`` (``GALLERY_HTML``; unless ``--gallery=false``): ``simclr.gallery``'s
  self-contained page: ``--gallery_queries`` test images, each with its
  ``--gallery_neighbours`` nearest train images, pretrained and random init side by
  side, and a 2-D map (UMAP when umap-learn is installed, else PCA) of the train
  features coloured by label.

With ``--tensorboard_dir`` the scalars also go to TensorBoard, run ``eval`` under it
(tags ``eval/knn_top1``, ``eval/alignment``, ``eval/baseline/knn_top1``, ...) at the
pretraining step, and the gallery as images (``eval/gallery/<encoder>``: rows of query |
neighbours; ``eval/map/<encoder>``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from absl import flags

from simclr import data, knobs, storage
from simclr import evaluate as ev
from simclr import report as rp
from simclr.errors import UserError
from simclr.knobs import knob
from simclr.tasks._app import dataclass_from_flags, define_dataclass_flags, run_task

_log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
CONFUSION_JSON = "confusion_matrix.json"
CONFUSION_PNG = "confusion_matrix.png"
EMBEDDING_PNG = "embedding.png"
REPORT_MD = "report.md"
GALLERY_HTML = "gallery.html"
LABEL_FREE_KEYS = ("alignment", "uniformity", "effective_rank", "view_retrieval_top1")
MAX_HELD_OUT = 1000  # queries held out of train when a dataset has no test split
BASELINES = ("random_init", "none")
EMBEDDINGS = ("tsne", "pca")
_METHOD_NAMES = {"tsne": "t-SNE", "pca": "PCA"}


@dataclass(kw_only=True)
class EvaluateConfig(ev.EvalOptions):
    """The task's flags: where to read and write, what to run, and (inherited) the
    protocols' own hyper-parameters, `simclr.evaluate.EvalOptions`."""

    data_dir: str = knob(help="prepare_data output (local, gs:// or s3://).")
    model_dir: str = knob(help="pretrain's --output_dir, or the encoder/ directory inside it.")
    output_dir: str = knob(
        help="Where metrics.json, confusion_matrix.json/png, embedding.png, report.md, "
        "gallery.html go."
    )
    protocols: str = knob("knn,linear,finetune", "Comma-separated subset of knn,linear,finetune.")
    baseline: str = knob(
        "random_init",
        "random_init: also evaluate a randomly initialised encoder of the same "
        "architecture; none: skip.",
        choices=BASELINES,
    )
    baseline_protocols: str = knob(
        "knn,linear", "Protocols the baseline runs (those also in --protocols)."
    )
    label_fractions: str = knob("", "Label subsets to fine-tune on (default: all in the manifest).")
    max_train_examples: int | None = knob(
        None,
        "Use a random N of the train examples (and of each label subset); 0: all.",
        at_least=0,
    )
    max_test_examples: int | None = knob(
        None, "Use a random N of the test examples; 0: all.", at_least=0
    )
    tensorboard_dir: str | None = knob(
        None, "Also write the scalars here (run 'eval'; local, gs:// or s3://)."
    )
    embedding: str = knob("tsne", "2-D embedding plot method: tsne or pca.", choices=EMBEDDINGS)
    embedding_max_points: int = knob(
        2000, "Test points in the embedding plot (random subsample).", above=0
    )
    label_free_max_images: int = knob(
        2000, "Test images (seeded sample) for the label-free figures.", at_least=2
    )
    gallery: bool = knob(True, "Write gallery.html (and the gallery images to TensorBoard).")
    gallery_queries: int = knob(16, "Query images (test split) in the gallery.", above=0)
    gallery_neighbours: int = knob(8, "Nearest train images shown per query.", above=0)


def define_flags() -> None:
    """Defines the flags (skipping names another task in this process already defined)."""
    define_dataclass_flags(EvaluateConfig)


_REQUIRED = ("data_dir", "model_dir", "output_dir")


def config_from_flags(values: flags.FlagValues) -> EvaluateConfig:
    return dataclass_from_flags(EvaluateConfig, values)


# --------------------------------------------------------------------------- validation


def _names(value: str, flag: str, allowed: tuple[str, ...]) -> list[str]:
    items = [v.strip() for v in str(value or "").split(",") if v.strip()]
    unknown = [v for v in items if v not in allowed]
    if unknown:
        raise UserError(
            f"--{flag}: unknown {', '.join(unknown)} (choose from {', '.join(allowed)})"
        )
    return [a for a in allowed if a in items]


def _floats(value: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--{flag} must be comma-separated numbers, got {value!r}") from None


def _check(config: EvaluateConfig) -> None:
    for name in _REQUIRED:
        if not getattr(config, name):
            raise UserError(f"--{name} is required")
    knobs.check(config)


def _subset_keys(config: EvaluateConfig, manifest: dict[str, Any]) -> list[str]:
    """Manifest label_subsets keys to fine-tune on, in increasing fraction."""
    available = {float(k): k for k in manifest.get("label_subsets", {})}
    wanted = _floats(config.label_fractions, "label_fractions") or sorted(available)
    missing = [f"{f:g}" for f in wanted if f not in available]
    if missing or not wanted:
        have = ", ".join(sorted(available.values())) or "none"
        raise UserError(
            f"--label_fractions: {', '.join(missing) or 'no'} label subset in "
            f"{config.data_dir} (available: {have})"
        )
    return [available[f] for f in sorted(set(wanted))]


# --------------------------------------------------------------------------- loading


def _load_split(
    config: EvaluateConfig,
    split: str,
    limit: int | None,
    num_classes: int,
    manifest: dict[str, Any] | None = None,
):
    """A split, or a seeded random subset of `limit` examples (not the first ones: a
    split may be stored grouped by class, e.g. the test split of the JPEG source).
    `num_classes` 0: unlabelled (labels are -1, not checked)."""
    images, labels = data.load_arrays(
        config.data_dir, split, int(limit) if limit else None, sample_seed=int(config.seed)
    )
    if len(labels) == 0:
        raise UserError(f"{config.data_dir}: split {split!r} is empty")
    bad = (labels < 0) | (labels >= num_classes)
    if num_classes and bad.any():
        raise UserError(
            f"{config.data_dir}: split {split!r} has labels outside [0, {num_classes}) "
            f"(e.g. {int(labels[bad][0])})"
        )
    return images, labels


def _evaluation_dataset(
    config: EvaluateConfig, manifest: dict[str, Any]
) -> tuple[EvaluateConfig, dict[str, Any]]:
    """The dataset to score on: prepare_data's --eval_source dataset when it made one."""
    entry = manifest.get("evaluation")
    if not entry:
        return config, manifest
    name = entry.get("data_dir") if isinstance(entry, dict) else None
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
        raise UserError(f"{storage.join(config.data_dir, data.MANIFEST)}: corrupt evaluation entry")
    eval_dir = storage.join(config.data_dir, name)
    _log.info(
        "%s was prepared with --eval_source %s: evaluating on %s",
        config.data_dir,
        entry.get("source"),
        eval_dir,
    )
    return replace(config, data_dir=eval_dir), data.load_manifest(eval_dir)


def _has_split(manifest: dict[str, Any], split: str) -> bool:
    return int(manifest["splits"].get(split, {}).get("num_examples", 0) or 0) > 0


def _load_data(
    config: EvaluateConfig, manifest: dict[str, Any], subset_keys: list[str], labelled: bool
) -> ev.EvalData:
    class_names = [str(c) for c in manifest.get("class_names", [])] if labelled else []
    if labelled and not class_names:
        raise UserError(f"{storage.join(config.data_dir, data.MANIFEST)}: no class_names")
    n = len(class_names)
    x_train, y_train = _load_split(config, data.TRAIN, config.max_train_examples, n, manifest)
    if _has_split(manifest, data.TEST):
        x_test, y_test = _load_split(config, data.TEST, config.max_test_examples, n, manifest)
    elif labelled:
        raise UserError(
            f"{config.data_dir}: no test split to score the protocols on "
            "(prepare it with --test_fraction > 0)"
        )
    else:
        x_train, y_train, x_test, y_test = _hold_out(x_train, y_train, config)
    subsets = {
        key: _load_split(config, data.LABEL_PREFIX + key, config.max_train_examples, n, manifest)
        for key in subset_keys
    }
    return ev.EvalData(class_names, x_train, y_train, x_test, y_test, subsets)


def _hold_out(images: np.ndarray, labels: np.ndarray, config: EvaluateConfig):
    """(train, train labels, queries, query labels): a seeded tenth of train, at most
    MAX_HELD_OUT and at least 2, kept out of the bank (a query is not its own neighbour)."""
    count = min(MAX_HELD_OUT, max(2, len(labels) // 10))
    if len(labels) < count + 2:
        raise UserError(f"{config.data_dir}: too few images ({len(labels)}) to evaluate")
    held = np.zeros(len(labels), bool)
    held[np.random.default_rng(int(config.seed)).choice(len(labels), count, replace=False)] = True
    _log.info("no test split: %d train images held out as the queries", count)
    return images[~held], labels[~held], images[held], labels[held]


def _pretrained_factory(model):
    """Fresh in-memory copies of the loaded model (fine-tuning trains them, not it)."""
    import keras

    def make():
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        return copy

    return make


def _random_init_factory(model_config: dict[str, Any], model_dir: str, seed: int):
    from simclr.model import ENCODERS, build_encoder, make_image_encoder

    name, width = model_config.get("encoder"), model_config.get("width_multiplier")
    if name not in ENCODERS or not width:
        raise UserError(
            f"{model_dir}: config.json lacks a known encoder/width_multiplier "
            f"({name!r}, {width!r}) to build the random-init baseline; "
            "use --baseline=none"
        )

    def make():
        import keras

        keras.utils.set_random_seed(seed)  # the same random weights every time
        return make_image_encoder(build_encoder(name, float(width)))

    return make


def _pretrain_steps(model_dir: str) -> int | None:
    """The global step from pretrain's metrics.json beside (or above) the encoder."""
    parent = (
        model_dir.rstrip("/").rsplit("/", 1)[0]
        if storage.is_remote(model_dir)
        else os.path.dirname(os.path.abspath(model_dir))
    )
    for directory in (model_dir, parent):
        uri = storage.join(directory, METRICS_FILE)
        if storage.exists(uri):
            try:
                steps = storage.read_json(uri).get("steps")
            except (UserError, AttributeError):
                continue
            if isinstance(steps, int):
                return steps
    return None


# --------------------------------------------------------------------------- run


def run(config: EvaluateConfig) -> dict[str, Any]:
    """Evaluates the encoder; writes the output files; returns metrics.json's content."""
    start = time.perf_counter()
    _check(config)
    storage.check_writable(config.output_dir, "--output_dir")  # before any work
    if config.tensorboard_dir:  # written after metrics.json: a failure there would be late
        storage.check_writable(config.tensorboard_dir, "--tensorboard_dir")
    requested = _names(config.protocols, "protocols", ev.PROTOCOLS)
    if not requested:
        raise UserError("--protocols is empty")
    config, manifest = _evaluation_dataset(config, data.load_manifest(config.data_dir))
    labelled = data.is_labelled(manifest)
    protocols = requested if labelled else []
    if not labelled:
        _log.warning(
            "%s has no labels: skipping %s (they need labels); reporting the label-free "
            "figures and the gallery",
            config.data_dir,
            ", ".join(_PROTOCOL_NAMES[p] for p in requested),
        )
    baseline_protocols = [
        p
        for p in _names(config.baseline_protocols, "baseline_protocols", ev.PROTOCOLS)
        if p in protocols
    ]
    subset_keys = _subset_keys(config, manifest) if "finetune" in protocols else []
    # Data before the model: bad data fails in seconds, without loading the encoder.
    eval_data = _load_data(config, manifest, subset_keys, labelled)
    from simclr.model import load_encoder

    model, model_config = load_encoder(config.model_dir)
    _check_input_size(model, eval_data, config)
    _log.info("evaluating %s: %s", config.model_dir, ", ".join(protocols) or "label-free only")
    encoders = {
        "pretrained": _evaluate_one(
            model, _pretrained_factory(model), eval_data, protocols, subset_keys, config
        )
    }
    if config.baseline == "random_init":
        factory = _random_init_factory(model_config, config.model_dir, int(config.seed))
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
            "random_init" in encoders,
            baseline_protocols,
            encoders["pretrained"].result.details,
        )
    )
    metrics["labelled"] = labelled
    metrics["settings"]["protocols_skipped"] = [p for p in requested if p not in protocols]
    metrics["settings"]["label_free_num_images"] = encoders["pretrained"].label_free_images
    images = _write_outputs(config, metrics, eval_data, encoders)
    if config.tensorboard_dir:
        write_tensorboard(
            config.tensorboard_dir, metrics, metrics.get("pretrain_steps") or 0, images
        )
    _log.info(
        "evaluation done in %.1fs: %s",
        time.perf_counter() - start,
        {k: v for k, v in metrics.items() if isinstance(v, float)},
    )
    return metrics


_PROTOCOL_NAMES = {"knn": "kNN", "linear": "linear probe", "finetune": "fine-tuning"}


def _check_input_size(model, eval_data: ev.EvalData, config: EvaluateConfig) -> None:
    want, have = tuple(model.inputs[0].shape[1:3]), eval_data.test_images.shape[1:3]
    if want != have:
        raise UserError(
            f"{config.data_dir} holds {have[0]}x{have[1]} images, the encoder at "
            f"{config.model_dir} takes {want[0]}x{want[1]}"
        )


@dataclass
class _Evaluated:
    """One encoder's results: protocol metrics + label-free figures, and its features."""

    metrics: dict[str, Any]
    result: ev.EncoderResult
    test_features: np.ndarray
    train_features: np.ndarray | None
    label_free_images: int


def _evaluate_one(
    frozen, factory, eval_data: ev.EvalData, protocols, subset_keys, config: EvaluateConfig
) -> _Evaluated:
    """The protocols (if any), then the label-free figures on the test images (their
    clean features shared with kNN/linear); train features too when the gallery needs them."""
    from simclr.quality import label_free_quality

    options = config  # an EvalOptions: the protocols read their own fields
    result = ev.EncoderResult({}, {}, None)
    if protocols:
        result = ev.evaluate_encoder(
            factory, eval_data, protocols, options, label_fractions=subset_keys, frozen_model=frozen
        )
    test_features = result.test_features
    if test_features is None:  # fine-tuning only, or no labels: still plotted and measured
        test_features = ev.extract_features(frozen, eval_data.test_images, options.batch_size)
    train_features = result.train_features
    if train_features is None and config.gallery:
        train_features = ev.extract_features(frozen, eval_data.train_images, options.batch_size)
    quality = label_free_quality(
        frozen,
        eval_data.test_images,
        features=test_features,
        seed=int(config.seed),
        batch_size=options.batch_size,
        max_images=int(config.label_free_max_images),
    )
    metrics = {**result.metrics, **{k: quality[k] for k in LABEL_FREE_KEYS}}
    return _Evaluated(metrics, result, test_features, train_features, quality["num_images"])


def _run_info(
    config, model_config, eval_data, protocols, has_baseline, baseline_protocols, details
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
            "protocols_run": protocols,
            "baseline_protocols_run": baseline_protocols if has_baseline else [],
            **details,
        },
    }
    steps = _pretrain_steps(config.model_dir)
    if steps is not None:
        info["pretrain_steps"] = steps
    return info


def _confusion(eval_data: ev.EvalData, result: ev.EncoderResult) -> dict[str, Any]:
    """From the linear probe, else kNN, else the largest fine-tuning fraction."""
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


def _write_outputs(config, metrics, eval_data, encoders) -> dict[str, np.ndarray]:
    """Writes every file (metrics.json last); returns the TensorBoard images (tag -> image)."""
    result = encoders["pretrained"].result
    confusion = _confusion(eval_data, result) if result.predictions else None
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
            f"Test-set embedding ({_METHOD_NAMES[config.embedding]}, {len(labels)} images)",
        )
        if config.gallery:
            summary = _write_gallery(
                os.path.join(staging, GALLERY_HTML), eval_data, encoders, config
            )
            images = _gallery_images(summary, eval_data)
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


def _write_gallery(path: str, eval_data: ev.EvalData, encoders, config) -> dict[str, Any]:
    from simclr import gallery

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


def _gallery_images(summary: dict[str, Any], eval_data: ev.EvalData) -> dict[str, np.ndarray]:
    """TensorBoard images: per encoder the retrieval grid and the 2-D map."""
    from simclr import gallery

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


def _embedding(features: np.ndarray, labels: np.ndarray, config: EvaluateConfig):
    rng = np.random.default_rng(int(config.seed))
    keep = np.sort(rng.permutation(len(labels))[: int(config.embedding_max_points)])
    return rp.embed_2d(features[keep], config.embedding, int(config.seed)), labels[keep]


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


def write_tensorboard(
    tensorboard_dir: str,
    metrics: dict[str, Any],
    step: int,
    images: dict[str, np.ndarray] | None = None,
) -> None:
    """Writes the scalars, and ``images`` (tag -> uint8 [H, W, 3]), to run ``eval`` under
    ``tensorboard_dir`` (monitor.SummaryLogger: uploaded for gs:// and s3://)."""
    from simclr.monitor import SummaryLogger

    logger = SummaryLogger(storage.join(tensorboard_dir, "eval"), sync_seconds=60.0)
    try:
        logger.scalars(step, scalar_tags(metrics))
        for tag, image in (images or {}).items():
            logger.images(step, tag, np.asarray(image, np.uint8)[None])
    finally:
        logger.close()


def main(argv: list[str] | None = None) -> None:
    run_task(define_flags, config_from_flags, run, argv)


if __name__ == "__main__":
    main()
