"""What the KFP component bodies call, inside our images.

Each adapter maps KFP artifacts (their local `.path`: a plain directory under kfp.local,
a `/gcs/...` FUSE path on Vertex AI, a local path uploaded afterwards on Kubeflow) to
the flags of one `simclr` task, runs the task's `run(config)` and turns what it wrote
into typed KFP outputs (Metrics, ClassificationMetrics, Markdown, HTML).

The simclr task modules (and with them TensorFlow) are imported lazily, so this
module is importable without TensorFlow; the compile path never imports it at all.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import typing
from collections.abc import Mapping
from typing import Any

from simclr import cluster, coerce, storage
from simclr.errors import UserError, exits_on_user_error

from simclr_pipeline import locations, ui
from simclr_pipeline.platforms import MIN_KFP_BACKEND


class AdapterError(UserError):
    """A pipeline parameter that does not fit the task's config."""


# ---------------------------------------------------------------------------------------
# Generic: config construction and metric flattening (unit-tested without TensorFlow)
# ---------------------------------------------------------------------------------------


def config_kwargs(config_cls: type, params: Mapping[str, Any], options: Mapping[str, Any]) -> dict:
    """Keyword arguments for `config_cls` from pipeline parameters plus free-form options.

    `options` (a dict pipeline parameter) override `params`. Values are coerced to the
    field types, because KFP hands dict values over as JSON (ints arrive as floats) and
    list-like flags as comma-separated strings. An empty string or None means "use the
    task's default".
    """
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    merged = {**params, **(options or {})}
    unknown = sorted(set(merged) - set(fields))
    if unknown:
        raise AdapterError(
            f"{config_cls.__name__} has no field(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(config_cls)
    kwargs = {}
    for name, value in merged.items():
        if value is None or value == "":
            continue
        kwargs[name] = coerce.to_type(value, hints.get(name, Any), name, AdapterError)
    return kwargs


def check_resolved(name: str, value: str) -> None:
    """Stops (one line) when the backend handed over a placeholder instead of its value:
    older KFP backends pass `{{$.pipeline_job_uuid}}` through verbatim, and every run
    would then share (and "resume" from) one checkpoint directory."""
    if "{{" in value and "}}" in value:
        raise UserError(
            f"{name} arrived unresolved ({value}): this pipeline needs a Kubeflow "
            f"Pipelines backend >= {MIN_KFP_BACKEND} (or Vertex AI)"
        )


def is_chief_process(env: Mapping[str, str] | None = None) -> bool:
    """Whether this replica writes the task's outputs: `simclr.cluster.is_chief`,
    TensorFlow's rule read from TF_CONFIG, so it holds before TensorFlow starts. No
    TF_CONFIG: the only process. A TF_CONFIG TensorFlow would refuse: a UserError."""

    return cluster.is_chief(env)


def _run_task(module_name: str, config_name: str, params: dict, options: Mapping) -> dict:
    module = importlib.import_module(f"simclr.tasks.{module_name}")
    config_cls = getattr(module, config_name)
    # A misspelt or mistyped `*_options` key is an AdapterError, a UserError like the
    # task's own: the entry points below turn both into one line and exit 2.
    config = config_cls(**config_kwargs(config_cls, params, options))
    print(f"simclr {module_name}: {config}", flush=True)
    return module.run(config) or {}


# ---------------------------------------------------------------------------------------
# One adapter per task
# ---------------------------------------------------------------------------------------


@exits_on_user_error
def prepare_data(dataset: Any, *, options: Mapping, **params: Any) -> dict:
    os.makedirs(dataset.path, exist_ok=True)
    manifest = _run_task(
        "prepare_data", "PrepareDataConfig", {**params, "output_dir": dataset.path}, options
    )
    splits = manifest.get("splits", {})
    dataset.metadata.update(
        {
            "source": manifest.get("source", {}).get("uri", params.get("source")),
            "num_train": splits.get("train", {}).get("num_examples"),
            "num_test": splits.get("test", {}).get("num_examples"),
            "label_subsets": sorted(manifest.get("label_subsets", {})),
            "format": "tfrecord",
        }
    )
    if evaluation := manifest.get("evaluation"):
        # prepare_data --eval_source: evaluate scores on this labelled dataset (eval/).
        dataset.metadata["evaluation"] = {
            k: evaluation.get(k) for k in ("data_dir", "source", "num_train", "num_test")
        }
    return manifest


@exits_on_user_error
def augment(dataset, policy, preview, augment_metrics, *, options: Mapping, **params) -> dict:
    os.makedirs(policy.path, exist_ok=True)
    metrics = _run_task(
        "augment",
        "AugmentConfig",
        {**params, "data_dir": dataset.path, "output_dir": policy.path},
        options,
    )
    policy.metadata["file"] = "policy.json"
    storage.write_text(
        preview.path,
        ui.images_html(
            "Augmentation preview (images and their two augmented views)",
            {"preview": os.path.join(policy.path, "preview.png")},
        ),
    )
    ui.log_metrics(augment_metrics, metrics)
    return metrics


@exits_on_user_error
def pretrain(
    dataset,
    policy,
    model,
    pretrain_metrics,
    tensorboard,
    *,
    run_id: str,
    tensorboard_root: str,
    checkpoint_root: str,
    options: Mapping,
    num_gpus: int = 0,
    **params,
) -> dict:
    """num_gpus: the GPUs the pipeline requested; > 0 stops the task unless TensorFlow
    sees one (--require_gpu)."""
    check_resolved("run_id", run_id)
    params["require_gpu"] = num_gpus > 0
    chief = is_chief_process()
    logdir = locations.tensorboard_dir_for(model, tensorboard_root, run_id)
    checkpoint_dir = locations.checkpoint_dir_for(model, checkpoint_root, run_id)
    locations.check_s3_settings(checkpoint_dir, model)
    locations.check_s3_settings(logdir, model)
    shown_logdir = logdir
    if chief:
        os.makedirs(model.path, exist_ok=True)
        storage.write_text(
            tensorboard.path,
            locations.tensorboard_markdown(logdir, checkpoint_dir, live=storage.is_remote(logdir)),
        )
        print(f"TensorBoard logs: {logdir}  ({locations.tensorboard_command(logdir)})", flush=True)
    print(f"Checkpoints: {checkpoint_dir}", flush=True)
    metrics = _run_task(
        "pretrain",
        "PretrainConfig",
        {
            **params,
            "data_dir": dataset.path,
            "output_dir": model.path,
            "policy": os.path.join(policy.path, policy.metadata.get("file", "policy.json")),
            "tensorboard_dir": logdir,
            "checkpoint_dir": checkpoint_dir,
        },
        options,
    )
    if not chief:
        # Every replica of a multi-worker job runs this same command with the same output
        # paths; only the chief may write them. Exiting here skips KFP's executor_output.
        print("simclr pretrain: worker done; the chief writes the outputs", flush=True)
        raise SystemExit(0)
    ui.log_metrics(pretrain_metrics, metrics)
    model.metadata.update(
        {
            "framework": "tensorflow",
            "encoder": params.get("encoder"),
            "width_multiplier": params.get("width_multiplier"),
            "encoder_dir": "encoder",
            "tensorboard_logdir": shown_logdir,
            "tensorboard_dir": logdir,
            "checkpoint_dir": checkpoint_dir,
        }
    )
    model.metadata.update(saved_model_metadata(model))
    tensorboard.metadata["logdir"] = shown_logdir
    return metrics


# The facts of the SavedModel's config.json a user needs to feed it (issue 17).
SAVED_MODEL_FACTS = (
    "image_size",
    "stored_size",
    "stem",
    "encoder",
    "width_multiplier",
    "embedding_size",
)
SAVED_MODEL_DIR = "encoder/saved_model"


def saved_model_metadata(model: Any) -> dict:
    """The Model artifact's metadata from the export's config.json: input size, stem,
    encoder, embedding size, and where the SavedModel is (relative and as a URI)."""
    config = storage.read_json(os.path.join(model.path, SAVED_MODEL_DIR, "config.json"))
    facts = {k: config.get(k) for k in SAVED_MODEL_FACTS}
    return {
        **facts,
        "saved_model": SAVED_MODEL_DIR,
        "saved_model_uri": saved_model_uri(model),
        "serving_signature": "serving_default",
        "serving_input": "image_bytes",
    }


def saved_model_uri(model: Any) -> str:
    """The SavedModel's durable URI (gs://, s3://; a local path under kfp.local)."""
    return storage.join(locations.durable_uri(model), *SAVED_MODEL_DIR.split("/"))


@exits_on_user_error
def embed(dataset, model, embeddings, embed_metrics, *, options: Mapping, **params) -> dict:
    os.makedirs(embeddings.path, exist_ok=True)
    metrics = _run_task(
        "embed",
        "EmbedConfig",
        {
            **params,
            "model_dir": model.path,
            "data_dir": dataset.path,
            "output_dir": embeddings.path,
        },
        options,
    )
    ui.log_metrics(embed_metrics, {k: v for k, v in metrics.items() if k != "splits"})
    splits = metrics.get("splits", {})
    embeddings.metadata.update(
        {
            "format": "parquet",
            "splits": sorted(splits),
            "files": [f for s in sorted(splits) for f in splits[s].get("files", [])],
            "num_images": metrics.get("num_images"),
            "embedding_dim": metrics.get("embedding_dim"),
            "normalized": metrics.get("normalized"),
            "images_per_second": metrics.get("images_per_second"),
        }
    )
    return metrics


@exits_on_user_error
def evaluate(
    dataset,
    model,
    evaluation,
    eval_metrics,
    confusion_matrix,
    report,
    plots,
    gallery,
    *,
    run_id: str,
    tensorboard_root: str,
    options: Mapping,
    **params,
) -> dict:
    check_resolved("run_id", run_id)
    os.makedirs(evaluation.path, exist_ok=True)
    # The pipeline says 0 for "all examples"; the task says None.
    params["max_train_examples"] = params.get("max_train_examples") or None
    # The same log directory as pretraining: evaluate adds its own "eval" run inside.
    tensorboard_dir = (
        locations.run_scoped_uri(tensorboard_root, run_id)
        if tensorboard_root
        else model.metadata.get("tensorboard_dir", "")
    )
    metrics = _run_task(
        "evaluate",
        "EvaluateConfig",
        {
            **params,
            "data_dir": dataset.path,
            "model_dir": model.path,
            "output_dir": evaluation.path,
            "tensorboard_dir": tensorboard_dir,
        },
        options,
    )
    ui.log_metrics(eval_metrics, metrics)
    _log_confusion_matrix(confusion_matrix, os.path.join(evaluation.path, "confusion_matrix.json"))
    report_file = os.path.join(evaluation.path, "report.md")
    if os.path.exists(report_file):
        with open(report_file) as f:
            storage.write_text(report.path, ui.inline_images(f.read(), evaluation.path))
    storage.write_text(
        plots.path,
        ui.images_html(
            "Evaluation",
            {
                "embedding": os.path.join(evaluation.path, "embedding.png"),
                "confusion matrix": os.path.join(evaluation.path, "confusion_matrix.png"),
            },
        ),
    )
    gallery_file = os.path.join(evaluation.path, "gallery.html")
    if os.path.exists(gallery_file):  # self-contained (data URIs): the UI shows it as is
        with open(gallery_file) as f:
            storage.write_text(gallery.path, f.read())
    return metrics


def _log_confusion_matrix(artifact: Any, path: str) -> None:
    if not os.path.exists(path):
        return
    data = storage.read_json(path)
    matrix = [[int(round(v)) for v in row] for row in data["matrix"]]
    artifact.log_confusion_matrix(list(data["class_names"]), matrix)
