"""Submitting a compiled pipeline to Kubeflow Pipelines or Vertex AI Pipelines.

The request objects are built by plain functions (`kubeflow_request`,
`vertex_job_kwargs`, `make_vertex_job`) so they can be inspected without a cluster;
`submit_kubeflow` / `submit_vertex` only hand them over. Every failure a user can
fix (no host, no project, no credentials, unreachable server) becomes a
`SubmitError` with a one-line message.
"""

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import kfp
import yaml
from simclr.errors import UserError

from simclr_pipeline import platforms
from simclr_pipeline.pipeline import PIPELINE_NAME

KUBEFLOW = "kubeflow"
VERTEX = "vertex"


class SubmitError(UserError):
    """A submission problem the user can fix; the message is one line."""


@dataclass(frozen=True)
class Settings:
    """Where to submit; flags win over the environment (KFP_HOST, VERTEX_*, PIPELINE_ROOT)."""

    host: str | None = None
    namespace: str | None = None
    project: str | None = None
    region: str | None = None
    pipeline_root: str | None = None
    service_account: str | None = None
    network: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **flags: str | None) -> "Settings":
        env = os.environ if env is None else env
        from_env = {
            "host": env.get("KFP_HOST"),
            "namespace": env.get("KFP_NAMESPACE"),
            "project": env.get("VERTEX_PROJECT"),
            "region": env.get("VERTEX_REGION"),
            "pipeline_root": env.get("PIPELINE_ROOT"),
            "service_account": env.get("VERTEX_SERVICE_ACCOUNT"),
            "network": env.get("VERTEX_NETWORK"),
        }
        merged = {k: (flags.get(k) or v or None) for k, v in from_env.items()}
        return cls(**merged)


def choose_target(settings: Settings, explicit: str | None = None) -> str:
    """Kubeflow when a host is given, Vertex AI when a project/region/root is given."""
    vertex_given = any([settings.project, settings.region])
    target = explicit
    if target in (None, "", "auto"):
        if settings.host and vertex_given:
            raise SubmitError(
                "both KFP_HOST and VERTEX_PROJECT/VERTEX_REGION are set; pass --target=kubeflow or --target=vertex"
            )
        if settings.host:
            target = KUBEFLOW
        elif vertex_given or settings.pipeline_root:
            target = VERTEX
        else:
            raise SubmitError(
                "nowhere to submit: set KFP_HOST (Kubeflow) or VERTEX_PROJECT, VERTEX_REGION "
                "and PIPELINE_ROOT (Vertex AI), or pass --host / --project --region --pipeline_root"
            )
    if target == KUBEFLOW and not settings.host:
        raise SubmitError("Kubeflow submission needs a host: set KFP_HOST or pass --host")
    if target == VERTEX:
        missing = [
            name
            for name, value in (
                ("VERTEX_PROJECT", settings.project),
                ("VERTEX_REGION", settings.region),
                ("PIPELINE_ROOT", settings.pipeline_root),
            )
            if not value
        ]
        if missing:
            raise SubmitError(f"Vertex AI submission needs {', '.join(missing)} (env or flags)")
        if not settings.pipeline_root.startswith("gs://"):
            raise SubmitError(f"PIPELINE_ROOT must be a gs:// URI, got {settings.pipeline_root}")
    if target not in (KUBEFLOW, VERTEX):
        raise SubmitError(f"--target must be kubeflow, vertex or auto, got {target}")
    return target


# ---------------------------------------------------------------------------------------
# What the package asks of the cluster
# ---------------------------------------------------------------------------------------


def _load_package(package_path: str) -> dict:
    try:
        with open(package_path) as f:
            spec = next(yaml.safe_load_all(f))
    except OSError as err:
        raise SubmitError(
            f"cannot read pipeline package {package_path}: {err.strerror} (run `make compile`)"
        ) from err
    except (yaml.YAMLError, StopIteration) as err:
        raise SubmitError(f"{package_path} is not a compiled pipeline (YAML error)") from err
    if not isinstance(spec, dict) or "deploymentSpec" not in spec:
        raise SubmitError(f"{package_path} is not a compiled KFP pipeline")
    return spec


def _worker_pools(spec: dict) -> Iterator[dict]:
    """The worker pools of Vertex AI custom jobs compiled into the package."""
    for component in spec.get("components", {}).values():
        params = component.get("inputDefinitions", {}).get("parameters", {})
        yield from params.get("worker_pool_specs", {}).get("defaultValue", []) or []


def package_images(spec: dict) -> list[str]:
    """Every container image the package runs (task containers and custom-job pools)."""
    images = [
        e["container"]["image"]
        for e in spec["deploymentSpec"]["executors"].values()
        if "container" in e
    ]
    images += [p["container_spec"]["image_uri"] for p in _worker_pools(spec)]
    return sorted(set(images))


def package_accelerators(spec: dict) -> list[str]:
    """The accelerator names the package requests (task resources and custom-job pools)."""
    names = []
    for e in spec["deploymentSpec"]["executors"].values():
        accelerator = e.get("container", {}).get("resources", {}).get("accelerator", {})
        names.append(accelerator.get("resourceType") or accelerator.get("type") or "")
    names += [p.get("machine_spec", {}).get("accelerator_type", "") for p in _worker_pools(spec)]
    return sorted({n for n in names if n})


def _has_kubernetes_config(package_path: str) -> bool:
    """Whether the package holds a Kubernetes platform spec (a second YAML document)."""
    with open(package_path) as f:
        docs = list(yaml.safe_load_all(f))
    return any(isinstance(d, dict) and "kubernetes" in d.get("platforms", {}) for d in docs[1:])


def check_package(package_path: str, target: str) -> None:
    """Refuses a package the target would fail on, before anything is sent."""
    spec = _load_package(package_path)
    for image in package_images(spec):
        if platforms.registry_host(image) is None:
            raise SubmitError(
                f"{package_path} runs image {image}, which names no registry host (a cluster "
                "would pull it from Docker Hub): compile with IMAGE_REPO=HOST/PATH, e.g. "
                "make compile IMAGE_REPO=us-docker.pkg.dev/PROJECT/REPO/simclr-kfp"
            )
    compiled_for = platforms.package_platform(package_accelerators(spec))
    if _has_kubernetes_config(package_path):
        compiled_for = platforms.KUBEFLOW  # Vertex AI reads one YAML document only
    if compiled_for and compiled_for != target:
        raise SubmitError(
            f"{package_path} was compiled for {compiled_for}, not {target}: "
            f"make compile PLATFORM={target}"
        )


# ---------------------------------------------------------------------------------------
# Kubeflow Pipelines
# ---------------------------------------------------------------------------------------


def kubeflow_request(
    package_path: str,
    arguments: Mapping[str, Any],
    *,
    experiment_name: str,
    run_name: str | None,
    enable_caching: bool | None,
    namespace: str | None = None,
    pipeline_root: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `kfp.Client.create_run_from_pipeline_package`.

    `enable_caching=None` keeps the per-task settings compiled into the package
    (data preparation cached, training not); True/False override every task.
    """
    request: dict[str, Any] = {
        "pipeline_file": package_path,
        "arguments": dict(arguments),
        "experiment_name": experiment_name,
        "run_name": run_name,
        "enable_caching": enable_caching,
    }
    if namespace:
        request["namespace"] = namespace
    if pipeline_root:
        request["pipeline_root"] = pipeline_root
    return request


def kubeflow_client_kwargs(settings: Settings, env: Mapping[str, str] | None = None) -> dict:
    env = os.environ if env is None else env
    kwargs: dict[str, Any] = {"host": settings.host}
    if settings.namespace:
        kwargs["namespace"] = settings.namespace
    if env.get("KFP_TOKEN"):  # e.g. a service account token for an authenticated endpoint
        kwargs["existing_token"] = env["KFP_TOKEN"]
    return kwargs


def submit_kubeflow(
    client_kwargs: Mapping[str, Any],
    request: Mapping[str, Any],
    client_factory: Callable[..., Any] | None = None,
) -> str:
    """Creates the run; returns its id. Connection/auth problems -> SubmitError."""
    if client_factory is None:
        client_factory = kfp.Client
    host = client_kwargs.get("host")
    try:
        client = client_factory(**client_kwargs)
        result = client.create_run_from_pipeline_package(**request)
    except SubmitError:
        raise
    except Exception as err:  # urllib3 / kfp_server_api errors are long multi-line texts
        raise SubmitError(f"Kubeflow Pipelines at {host}: {_first_line(err)}") from err
    return str(getattr(result, "run_id", result))


# ---------------------------------------------------------------------------------------
# Vertex AI Pipelines
# ---------------------------------------------------------------------------------------


def vertex_job_kwargs(
    package_path: str,
    arguments: Mapping[str, Any],
    settings: Settings,
    *,
    display_name: str | None,
    enable_caching: bool | None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `google.cloud.aiplatform.PipelineJob`."""
    return {
        "display_name": display_name or PIPELINE_NAME,
        "template_path": package_path,
        "pipeline_root": settings.pipeline_root,
        "parameter_values": dict(arguments),
        "enable_caching": enable_caching,
        "project": settings.project,
        "location": settings.region,
        "labels": dict(labels or {"app": "simclr-kfp"}),
    }


def make_vertex_job(job_kwargs: Mapping[str, Any], credentials: Any = None):
    """The `aiplatform.PipelineJob` (nothing is sent until `.submit()`)."""
    from google.auth import exceptions as auth_exceptions
    from google.cloud import aiplatform

    try:
        return aiplatform.PipelineJob(**job_kwargs, credentials=credentials)
    except auth_exceptions.DefaultCredentialsError as err:
        raise SubmitError(_credentials_message(err)) from err
    except ValueError as err:  # e.g. a parameter the template does not declare
        raise SubmitError(f"Vertex AI PipelineJob: {_first_line(err)}") from err


def submit_vertex(job: Any, service_account: str | None = None, network: str | None = None) -> str:
    """Submits the job; returns its resource name. The service account and network also
    reach multi-worker pretraining's custom job (compiled with Vertex AI's placeholders)."""
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions

    try:
        job.submit(service_account=service_account or None, network=network or None)
    except auth_exceptions.DefaultCredentialsError as err:
        raise SubmitError(_credentials_message(err)) from err
    except (auth_exceptions.GoogleAuthError, api_exceptions.GoogleAPIError) as err:
        raise SubmitError(f"Vertex AI: {_first_line(err)}") from err
    return job.resource_name


def _credentials_message(err: Exception) -> str:
    """What went wrong with the credentials: none found, or found and unusable (say why)."""
    reason = _first_line(err)
    # google-auth's wording when it found nothing (older releases: "Could not
    # automatically determine credentials"); anything else is a credential that failed.
    nothing_found = ("default credentials were not found", "could not automatically determine")
    if any(phrase in reason.lower() for phrase in nothing_found):
        return (
            "no Google Cloud credentials found: run `gcloud auth application-default login` "
            "or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
        )
    return f"Google Cloud credentials could not be loaded: {reason}"


def _first_line(err: Exception) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:300]


def run_caching(arguments: dict, enable_caching: bool | None) -> tuple[bool | None, str]:
    """(enable_caching for the run, a note to print): caching is switched off for a run whose
    `source` is not pinned by `sha256`. KFP's cache key is the task's inputs and image
    (backend/src/v2/cacheutils/cache.go at 2.17.0), not the bytes behind the source URI: a
    changed archive at the same URI would be a hit, and every step after it would reuse
    outputs of the old data."""
    if enable_caching is not None or arguments.get("sha256"):
        return enable_caching, ""
    return False, (
        "caching off for this run: source is not pinned by sha256 "
        "(--param sha256=HEX caches prepare-data and augment; --enable_caching forces it)"
    )
