"""Where a task's outputs go beyond its pod: artifacts' durable URIs, run-scoped
checkpoint and TensorBoard directories (stable across retries of one run, distinct
between runs), and the TensorBoard note pretrain publishes."""

import os
from collections.abc import Mapping
from typing import Any

from simclr import storage
from simclr.errors import UserError

from simclr_pipeline.platforms import KFP_S3_ENDPOINT, KFP_S3_SECRET


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
