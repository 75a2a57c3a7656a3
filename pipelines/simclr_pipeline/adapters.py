"""What the KFP component bodies call, inside our images.

Each adapter maps KFP artifacts (their local `.path`: a plain directory under kfp.local,
a `/gcs/...` FUSE path on Vertex AI, a local path uploaded afterwards on Kubeflow) to
the flags of one `simclr` task, runs the task's `run(config)` and turns what it wrote
into typed KFP outputs (Metrics, ClassificationMetrics, Markdown, HTML).

The simclr task modules (and with them TensorFlow) are imported lazily, so this
module is importable without TensorFlow; the compile path never imports it at all.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import importlib
import os
import typing
from collections.abc import Mapping
from typing import Any

from simclr import cluster, coerce, storage
from simclr.errors import UserError, exits_on_user_error

from simclr_pipeline.platforms import KFP_S3_ENDPOINT, KFP_S3_SECRET, MIN_KFP_BACKEND


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


def durable_uri(artifact: Any) -> str:
    """Where an artifact's data lives beyond the pod: its remote URI (gs://, s3://; KFP's
    minio:// is S3), or its local path when that is all there is (kfp.local, Vertex's
    /gcs FUSE paths have gs:// URIs)."""
    uri = artifact.uri or ""
    if uri.startswith("minio://"):
        return "s3://" + uri[len("minio://") :]
    if storage.is_remote(uri):
        return uri
    return artifact.path


def check_s3_settings(uri: str, artifact: Any, env: Mapping[str, str] | None = None) -> None:
    """KFP's own MinIO store is reachable only with its endpoint and keys in the
    environment: say so in one line instead of failing somewhere inside boto3."""
    env = os.environ if env is None else env
    if not (artifact.uri or "").startswith("minio://") or not uri.startswith("s3://"):
        return
    missing = [n for n in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID") if not env.get(n)]
    if missing:
        raise UserError(
            f"checkpoints go to KFP's object store ({uri}) but {', '.join(missing)} "
            f"is not set: compile with --s3_secret={KFP_S3_SECRET} "
            f"--s3_endpoint_url={KFP_S3_ENDPOINT} (the defaults), or set checkpoint_root"
        )


def run_scoped_uri(root: str, run_id: str, *parts: str) -> str:
    """`<root>/<run id>/...`: stable across retries of one run, distinct between runs."""
    return "/".join([root.rstrip("/"), run_id, *parts])


def display_uri(path: str, artifact: Any) -> str:
    """Turns a path inside `artifact.path` into the artifact's URI form (gs://, minio://...)."""
    if path.startswith(artifact.path) and artifact.uri and artifact.uri != artifact.path:
        return artifact.uri.rstrip("/") + path[len(artifact.path.rstrip("/")) :]
    return path


# Set by a Vertex AI CustomJob created with a TensorBoard instance (--vertex_tensorboard).
VERTEX_TENSORBOARD_ENV = "AIP_TENSORBOARD_LOG_DIR"


def beside(artifact: Any, name: str) -> str:
    """`<the artifact's durable URI, minus its last part>/<name>`: next to the artifact in the
    task's output folder (same on every retry of the task), not inside it, so a later step
    that downloads the artifact does not download this too."""
    return storage.join(durable_uri(artifact).rstrip("/").rsplit("/", 1)[0], name)


def checkpoint_dir_for(model: Any, checkpoint_root: str, run_id: str) -> str:
    """Durable and stable across retries of this task (a retry re-runs the pod with the
    same output URIs): under checkpoint_root/<run id>, else beside the model artifact. Never
    model.path on Kubeflow: that is the pod's scratch space, uploaded only on success."""
    if checkpoint_root:
        return run_scoped_uri(checkpoint_root, run_id, "checkpoints")
    return beside(model, "checkpoints")


def tensorboard_dir_for(
    model: Any, tensorboard_root: str, run_id: str, env: Mapping[str, str] | None = None
) -> str:
    """Run-scoped and written live: tensorboard_root/<run id>, else Vertex AI's
    AIP_TENSORBOARD_LOG_DIR when set, else beside the model artifact (in the pipeline root,
    which on Kubeflow is the object store, so TensorBoard can follow it while it trains)."""
    env = os.environ if env is None else env
    if tensorboard_root:
        return run_scoped_uri(tensorboard_root, run_id)
    # Not "tensorboard": that is the name of pretrain's Markdown output, beside it too.
    return env.get(VERTEX_TENSORBOARD_ENV) or beside(model, "tensorboard_logs")


def tensorboard_command(logdir: str) -> str:
    """A command that opens `logdir` (TensorBoard and simclr.storage read gs:// and s3://)."""
    credentials = {
        "s3://": "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set (on "
        "Kubeflow: the mlpipeline-minio-artifact Secret of your namespace and the SeaweedFS "
        "Service, e.g. `kubectl port-forward -n kubeflow svc/seaweedfs 9000:9000`)",
        "gs://": "Google credentials that may read the bucket",
    }
    need = next((v for k, v in credentials.items() if logdir.startswith(k)), "")
    return f"make tensorboard LOGDIR={logdir}" + (f"   # with {need}" if need else "")


def tensorboard_markdown(logdir: str, checkpoint_dir: str, live: bool) -> str:
    where = (
        "written live during training"
        if live
        else "on this machine's disk (kfp.local); set the `tensorboard_root` pipeline "
        "parameter to a gs:// or s3:// URI to write them to a bucket"
    )
    return (
        "# TensorBoard\n\n"
        f"Logs: `{logdir}` ({where}).\n\n"
        "From a checkout of simclr-kfp:\n\n"
        f"```\n{tensorboard_command(logdir)}\n```\n\n"
        "In the Kubeflow dashboard: Tensorboards -> New TensorBoard -> Object store link "
        f"`{logdir}` (s3:// needs a PodDefault with the credentials; docs/pipelines.md).\n\n"
        f"Checkpoints (a retried task resumes from them): `{checkpoint_dir}`\n"
    )


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
        images_html(
            "Augmentation preview (images and their two augmented views)",
            {"preview": os.path.join(policy.path, "preview.png")},
        ),
    )
    log_metrics(augment_metrics, metrics)
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
    logdir = tensorboard_dir_for(model, tensorboard_root, run_id)
    checkpoint_dir = checkpoint_dir_for(model, checkpoint_root, run_id)
    check_s3_settings(checkpoint_dir, model)
    check_s3_settings(logdir, model)
    shown_logdir = logdir
    if chief:
        os.makedirs(model.path, exist_ok=True)
        storage.write_text(
            tensorboard.path,
            tensorboard_markdown(logdir, checkpoint_dir, live=storage.is_remote(logdir)),
        )
        print(f"TensorBoard logs: {logdir}  ({tensorboard_command(logdir)})", flush=True)
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
    log_metrics(pretrain_metrics, metrics)
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
    return storage.join(durable_uri(model), *SAVED_MODEL_DIR.split("/"))


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
    log_metrics(embed_metrics, {k: v for k, v in metrics.items() if k != "splits"})
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
        run_scoped_uri(tensorboard_root, run_id)
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
    log_metrics(eval_metrics, metrics)
    _log_confusion_matrix(confusion_matrix, os.path.join(evaluation.path, "confusion_matrix.json"))
    report_file = os.path.join(evaluation.path, "report.md")
    if os.path.exists(report_file):
        with open(report_file) as f:
            storage.write_text(report.path, inline_images(f.read(), evaluation.path))
    storage.write_text(
        plots.path,
        images_html(
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
