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

Files written to ``--output_dir`` (atomically, ``metrics.json`` last):

- ``metrics.json``: ``knn_top1``, ``knn_top5``, ``linear_top1``, ``linear_top5``,
  ``finetune_top1_<fraction>`` (only the protocols run; fractions in [0, 1]),
  ``baseline`` (the same keys, when a baseline ran), ``num_train``, ``num_test``,
  ``encoder`` ({encoder, width_multiplier, feature_dim}), ``pretrain_steps`` (when
  the model dir has pretrain's metrics.json), ``model_dir``, ``data_dir``, ``settings``.
- ``confusion_matrix.json``: ``{"class_names", "matrix" (rows: true class, columns:
  predicted), "per_class_accuracy", "protocol"}``, from the linear probe (else kNN,
  else the largest fine-tuning fraction); for KFP's ``log_confusion_matrix``.
- ``confusion_matrix.png``, ``embedding.png`` (2-D t-SNE or PCA of the test
  features, coloured by class) and ``report.md`` (which references both).

With ``--tensorboard_dir`` the scalars also go to TensorBoard, run ``eval`` under it
(tags ``eval/knn_top1``, ``eval/baseline/knn_top1``, ...) at the pretraining step.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from absl import flags

from simclr import data, storage
from simclr import evaluate as ev
from simclr import report as rp
from simclr.errors import UserError
from simclr.tasks._app import dataclass_from_flags, define_dataclass_flags, run_task

_log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
CONFUSION_JSON = "confusion_matrix.json"
CONFUSION_PNG = "confusion_matrix.png"
EMBEDDING_PNG = "embedding.png"
REPORT_MD = "report.md"
BASELINES = ("random_init", "none")
EMBEDDINGS = ("tsne", "pca")
_METHOD_NAMES = {"tsne": "t-SNE", "pca": "PCA"}


@dataclass
class EvaluateConfig:
    data_dir: str
    model_dir: str
    output_dir: str
    protocols: str = "knn,linear,finetune"
    baseline: str = "random_init"
    baseline_protocols: str = "knn,linear"
    label_fractions: str = ""  # "" = every label subset in the manifest
    max_train_examples: int | None = None
    max_test_examples: int | None = None
    tensorboard_dir: str | None = None
    batch_size: int = 256
    knn_k: int = 200
    knn_temperature: float = 0.1
    linear_c_grid: str = "0.001,0.01,0.1,1"
    linear_augment_copies: int = 0
    finetune_epochs: int = 30
    finetune_batch_size: int = 64
    finetune_learning_rate: float = 0.1
    finetune_encoder_learning_rate: float = 0.01
    finetune_augment: bool = True
    embedding: str = "tsne"
    embedding_max_points: int = 2000
    seed: int = 0


_HELP = {
    "data_dir": "prepare_data output (local, gs:// or s3://).",
    "model_dir": "pretrain's --output_dir, or the encoder/ directory inside it.",
    "output_dir": "Where metrics.json, confusion_matrix.json/png, embedding.png, report.md go.",
    "protocols": "Comma-separated subset of knn,linear,finetune.",
    "baseline": "random_init: also evaluate a randomly initialised encoder of the same "
    "architecture; none: skip.",
    "baseline_protocols": "Protocols the baseline runs (those also in --protocols).",
    "label_fractions": "Label subsets to fine-tune on (default: all in the manifest).",
    "max_train_examples": "Use a random N of the train examples (and of each label subset); "
    "0: all.",
    "max_test_examples": "Use a random N of the test examples; 0: all.",
    "tensorboard_dir": "Also write the scalars here (run 'eval'; local, gs:// or s3://).",
    "batch_size": "Batch size for feature extraction.",
    "knn_k": "Neighbours for the kNN classifier.",
    "knn_temperature": "kNN vote weight exp(sim / T).",
    "linear_c_grid": "Inverse L2 strengths (scikit-learn C) tried on a held-out 20% of train.",
    "linear_augment_copies": "Extra crop+flip views of train added to the linear probe's data.",
    "finetune_epochs": "Fine-tuning epochs over each label subset.",
    "finetune_batch_size": "Fine-tuning batch size.",
    "finetune_learning_rate": "Learning rate of the linear head (Nesterov SGD, cosine decay).",
    "finetune_encoder_learning_rate": "Learning rate of the encoder when fine-tuning.",
    "finetune_augment": "Pad-4 random crop + horizontal flip while fine-tuning.",
    "embedding": "2-D embedding plot method: tsne or pca.",
    "embedding_max_points": "Test points in the embedding plot (random subsample).",
    "seed": "Seed of the random-init baseline, data splits and fine-tuning.",
}


def define_flags() -> None:
    """Defines the flags (skipping names another task in this process already defined)."""
    define_dataclass_flags(EvaluateConfig, _HELP)


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
    if config.baseline not in BASELINES:
        raise UserError(
            f"--baseline must be one of {', '.join(BASELINES)}, got {config.baseline!r}"
        )
    if config.embedding not in EMBEDDINGS:
        raise UserError(
            f"--embedding must be one of {', '.join(EMBEDDINGS)}, got {config.embedding!r}"
        )
    for name in ("max_train_examples", "max_test_examples"):
        value = getattr(config, name)
        if value is not None and int(value) < 0:
            raise UserError(f"--{name} must be >= 0 (0: all), got {value}")
    positive = (
        "batch_size",
        "knn_k",
        "knn_temperature",
        "finetune_batch_size",
        "finetune_learning_rate",
        "embedding_max_points",
    )
    for name in positive:
        if not float(getattr(config, name)) > 0:
            raise UserError(f"--{name} must be > 0, got {getattr(config, name)}")
    if int(config.finetune_epochs) < 1:
        raise UserError(f"--finetune_epochs must be >= 1, got {config.finetune_epochs}")
    if int(config.linear_augment_copies) < 0:
        raise UserError(f"--linear_augment_copies must be >= 0, got {config.linear_augment_copies}")
    if config.finetune_encoder_learning_rate < 0:
        raise UserError("--finetune_encoder_learning_rate must be >= 0")
    grid = _floats(config.linear_c_grid, "linear_c_grid")
    if not grid or min(grid) <= 0:
        raise UserError(f"--linear_c_grid needs positive numbers, got {config.linear_c_grid!r}")


def _options(config: EvaluateConfig) -> ev.EvalOptions:
    return ev.EvalOptions(
        batch_size=int(config.batch_size),
        knn_k=int(config.knn_k),
        knn_temperature=float(config.knn_temperature),
        linear_c_grid=tuple(_floats(config.linear_c_grid, "linear_c_grid")),
        linear_augment_copies=int(config.linear_augment_copies),
        finetune_epochs=int(config.finetune_epochs),
        finetune_batch_size=int(config.finetune_batch_size),
        finetune_learning_rate=float(config.finetune_learning_rate),
        finetune_encoder_learning_rate=float(config.finetune_encoder_learning_rate),
        finetune_augment=bool(config.finetune_augment),
        seed=int(config.seed),
    )


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


def _load_split(config: EvaluateConfig, split: str, limit: int | None, num_classes: int):
    """A split, or a seeded random subset of `limit` examples (not the first ones: a
    split may be stored grouped by class, e.g. the test split of the JPEG source)."""
    images, labels = data.load_arrays(
        config.data_dir, split, int(limit) if limit else None, sample_seed=int(config.seed)
    )
    if len(labels) == 0:
        raise UserError(f"{config.data_dir}: split {split!r} is empty")
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise UserError(
            f"{config.data_dir}: split {split!r} has labels outside [0, {num_classes}) "
            f"(e.g. {int(labels[bad][0])})"
        )
    return images, labels


def _load_data(
    config: EvaluateConfig, manifest: dict[str, Any], subset_keys: list[str]
) -> ev.EvalData:
    class_names = [str(c) for c in manifest.get("class_names", [])]
    if not class_names:
        raise UserError(f"{storage.join(config.data_dir, data.MANIFEST)}: no class_names")
    n = len(class_names)
    x_train, y_train = _load_split(config, data.TRAIN, config.max_train_examples, n)
    x_test, y_test = _load_split(config, data.TEST, config.max_test_examples, n)
    subsets = {
        key: _load_split(config, data.LABEL_PREFIX + key, config.max_train_examples, n)
        for key in subset_keys
    }
    return ev.EvalData(class_names, x_train, y_train, x_test, y_test, subsets)


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
    protocols = _names(config.protocols, "protocols", ev.PROTOCOLS)
    if not protocols:
        raise UserError("--protocols is empty")
    baseline_protocols = [
        p
        for p in _names(config.baseline_protocols, "baseline_protocols", ev.PROTOCOLS)
        if p in protocols
    ]
    options = _options(config)
    manifest = data.load_manifest(config.data_dir)
    subset_keys = _subset_keys(config, manifest) if "finetune" in protocols else []
    # Data before the model: bad data fails in seconds, without importing TensorFlow.
    eval_data = _load_data(config, manifest, subset_keys)
    from simclr.model import load_encoder

    model, model_config = load_encoder(config.model_dir)
    baseline_factory = None
    if config.baseline == "random_init" and baseline_protocols:
        baseline_factory = _random_init_factory(model_config, config.model_dir, int(config.seed))

    _log.info("evaluating %s: %s", config.model_dir, ", ".join(protocols))
    result = ev.evaluate_encoder(
        _pretrained_factory(model),
        eval_data,
        protocols,
        options,
        label_fractions=subset_keys,
        frozen_model=model,
    )
    metrics: dict[str, Any] = dict(result.metrics)
    if baseline_factory is not None:
        _log.info("random-init baseline: %s", ", ".join(baseline_protocols))
        baseline = ev.evaluate_encoder(
            baseline_factory, eval_data, baseline_protocols, options, label_fractions=subset_keys
        )
        metrics["baseline"] = baseline.metrics
    test_features = result.test_features
    if test_features is None:  # fine-tuning only: the plot still shows the frozen encoder
        test_features = ev.extract_features(model, eval_data.test_images, options.batch_size)

    metrics.update(
        _run_info(
            config,
            model_config,
            eval_data,
            protocols,
            baseline_factory,
            baseline_protocols,
            result.details,
        )
    )
    _write_outputs(config, metrics, eval_data, result, test_features)
    if config.tensorboard_dir:
        write_tensorboard(config.tensorboard_dir, metrics, metrics.get("pretrain_steps") or 0)
    _log.info(
        "evaluation done in %.1fs: %s",
        time.perf_counter() - start,
        {k: v for k, v in metrics.items() if isinstance(v, float)},
    )
    return metrics


def _run_info(
    config, model_config, eval_data, protocols, baseline_factory, baseline_protocols, details
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "num_train": int(len(eval_data.train_labels)),
        "num_test": int(len(eval_data.test_labels)),
        "encoder": {k: model_config.get(k) for k in ("encoder", "width_multiplier", "feature_dim")},
        "model_dir": config.model_dir,
        "data_dir": config.data_dir,
        "settings": {
            **{
                k: v
                for k, v in asdict(config).items()
                if k not in ("data_dir", "model_dir", "output_dir")
            },
            "protocols_run": protocols,
            "baseline_protocols_run": baseline_protocols if baseline_factory else [],
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


def _write_outputs(config, metrics, eval_data, result, test_features) -> None:
    confusion = _confusion(eval_data, result)
    points, labels = _embedding(test_features, eval_data.test_labels, config)
    with storage.atomic_dir(config.output_dir, last=(METRICS_FILE,)) as staging:
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
        text = rp.render_report(
            metrics,
            class_names=eval_data.class_names,
            confusion=confusion,
            embedding_png=EMBEDDING_PNG,
            confusion_png=CONFUSION_PNG,
            settings=metrics["settings"],
        )
        with open(os.path.join(staging, REPORT_MD), "w") as f:
            f.write(text)
        with open(os.path.join(staging, METRICS_FILE), "w") as f:
            json.dump(metrics, f, indent=2, sort_keys=True)


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
    return isinstance(value, float) and (key.endswith(("_top1", "_top5")) or "_top1_" in key)


def write_tensorboard(tensorboard_dir: str, metrics: dict[str, Any], step: int) -> None:
    """Writes the scalars to run ``eval`` under ``tensorboard_dir`` (uploaded for gs:// and s3://)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="simclr-eval-tb-") as tmp:
        local = tmp if storage.is_remote(tensorboard_dir) else tensorboard_dir
        writer = tf.summary.create_file_writer(os.path.join(local, "eval"))
        with writer.as_default():
            for tag, value in scalar_tags(metrics).items():
                tf.summary.scalar(tag, value, step=step)
        writer.close()
        if storage.is_remote(tensorboard_dir):
            storage.upload_dir(tmp, tensorboard_dir)


def main(argv: list[str] | None = None) -> None:
    run_task(define_flags, config_from_flags, run, argv)


if __name__ == "__main__":
    main()
