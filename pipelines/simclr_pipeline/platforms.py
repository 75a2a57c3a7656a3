"""What each platform accepts, checked at compile (and submit) time.

The same YAML cannot serve both platforms: the KFP backend's driver writes the
accelerator type verbatim as the pod's resource-limit name
(`backend/src/v2/driver/driver.go`: `res.Limits[k8score.ResourceName(acceleratorType)]`),
so on Kubeflow it must be a Kubernetes extended-resource name such as `nvidia.com/gpu`
(the GPU model is chosen with a node selector, e.g. `cloud.google.com/gke-accelerator`),
while Vertex AI wants a member of its `AcceleratorType` enum (`NVIDIA_TESLA_A100`, ...).

The Kubernetes rules are ported from Kubernetes itself:
`k8s.io/apimachinery/pkg/api/validate/content/kube.go` (IsLabelKey = IsQualifiedName,
IsLabelValue), `.../util/validation/validation.go` (IsDNS1123Subdomain) and
`pkg/apis/core/helper/helpers.go` (IsExtendedResourceName, IsNativeResource).
No kfp import here: the component bodies import this module too.
"""

from __future__ import annotations

import re

from simclr.errors import UserError

KUBEFLOW = "kubeflow"
VERTEX = "vertex"
PLATFORMS = (KUBEFLOW, VERTEX)
DEFAULT_PLATFORM = KUBEFLOW

# Default GPU request per platform (the resource name on Kubeflow, the enum on Vertex AI).
DEFAULT_ACCELERATOR = {KUBEFLOW: "nvidia.com/gpu", VERTEX: "NVIDIA_TESLA_A100"}
# GKE's node label naming the GPU model (https://cloud.google.com/kubernetes-engine/docs/how-to/gpus).
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"

# KFP's own object store. Since KFP 2.16 (kubeflow/pipelines#12613) it is SeaweedFS, Service
# `seaweedfs` in namespace `kubeflow` (backend/src/v2/objectstore/config.go at 2.17.0:
# DefaultEndpointInMultiUserMode = "seaweedfs.kubeflow:9000"); the MinIO Service is gone.
# Its credentials keep the old Secret name, keys accesskey/secretkey: in namespace kubeflow
# (manifests/kustomize/third-party/seaweedfs/.../mlpipeline-minio-artifact-secret.yaml) and, in
# multi-user mode, one per profile namespace with that namespace's own key (the profile
# controller, manifests/kustomize/base/installs/multi-user/pipelines-profile-controller/sync.py).
KFP_S3_SECRET = "mlpipeline-minio-artifact"
KFP_S3_ENDPOINT = "http://seaweedfs.kubeflow:9000"
KFP_BUCKET = "mlpipeline"
KFP_MINIO_SECRET, KFP_MINIO_ENDPOINT = KFP_S3_SECRET, KFP_S3_ENDPOINT  # the old names
S3_SECRET_KEYS = {"accesskey": "AWS_ACCESS_KEY_ID", "secretkey": "AWS_SECRET_ACCESS_KEY"}
# "none" as --s3_secret / --s3_endpoint_url: no S3 settings (e.g. Kubeflow on GKE with gs://).
NONE = "none"


def kfp_writable_prefixes(namespace: str) -> tuple[str, ...]:
    """Where a profile namespace's key may write in KFP's bucket (multi-user, KFP >= 2.16).

    sync.py at 2.17.0 gives the key s3:Put*/Get*/List*/DeleteObject on exactly these
    `mlpipeline/<prefix>*` resources; anything else in the bucket is AccessDenied. The
    namespace's default pipeline root is `minio://mlpipeline/private-artifacts/<ns>/v2/artifacts`.
    """
    return ("artifacts/", f"private-artifacts/{namespace}/", f"private/{namespace}/", "shared/")


# --- Retries ------------------------------------------------------------------------------
#
# The same `backoff_max_duration` means different things on the two platforms:
# - Kubeflow: KFP's Argo compiler puts it on the executor template as
#   retryStrategy.backoff.maxDuration (backend/src/v2/compiler/argocompiler/container.go at
#   2.17.0), and Argo (workflow/controller/operator.go at v4.0.5, the version KFP 2.17 pins)
#   measures it from the FIRST attempt's start: no retry starts after it, and a retry that
#   starts is killed at it (its execution deadline). It must cover the whole training, all
#   attempts included (kubeflow/pipelines#13452, #14245).
# - Vertex AI: the longest wait between two retries; an hour is plenty.
RETRY_WINDOW = {KUBEFLOW: "14d", VERTEX: "3600s"}
RETRY_BACKOFF = "60s"
RETRY_BACKOFF_FACTOR = 2.0

# The oldest KFP backend that runs this pipeline: 2.5.0 is the first release that
# resolves `dsl.PIPELINE_JOB_ID_PLACEHOLDER` (kubeflow/pipelines#11599); a pipeline
# parameter as accelerator limit (`num_gpus`) needs 2.4.0 (#11501).
MIN_KFP_BACKEND = "2.5.0"


class PlatformError(UserError):
    """A compile/submit option the target platform would reject; the message is one line."""


# --- Kubernetes names (ported from Kubernetes, see the module docstring) -------------------

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_DNS1123_SUBDOMAIN_MAX = 253
_LABEL_KEY_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY_NAME_RE = re.compile(rf"^{_LABEL_KEY_NAME}$")
_LABEL_VALUE_RE = re.compile(rf"^({_LABEL_KEY_NAME})?$")
_NAME_MAX = 63
_RESOURCE_DEFAULT_NAMESPACE_PREFIX = "kubernetes.io/"
_RESOURCE_REQUESTS_PREFIX = "requests."


def qualified_name_errors(value: str) -> list[str]:
    """Kubernetes' IsQualifiedName (a label key): `[prefix/]name`; [] when valid."""
    parts = value.split("/")
    if len(parts) > 2:
        return ["must be [DNS subdomain/]name with at most one '/'"]
    errors = []
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errors.append("prefix part must be non-empty")
        elif len(prefix) > _DNS1123_SUBDOMAIN_MAX or not _DNS1123_SUBDOMAIN.match(prefix):
            errors.append("prefix part must be a lowercase RFC 1123 subdomain")
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > _NAME_MAX:
        errors.append(f"name part must be at most {_NAME_MAX} characters")
    if not _LABEL_KEY_NAME_RE.match(name):
        errors.append(
            "name part must consist of alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return errors


def label_value_errors(value: str) -> list[str]:
    """Kubernetes' IsLabelValue; [] when valid."""
    errors = []
    if len(value) > _NAME_MAX:
        errors.append(f"must be at most {_NAME_MAX} characters")
    if not _LABEL_VALUE_RE.match(value):
        errors.append(
            "must be empty or alphanumerics, '-', '_' or '.', starting and ending "
            "with an alphanumeric"
        )
    return errors


def is_native_resource(name: str) -> bool:
    """In the kubernetes.io/ namespace; unprefixed names are implicitly there."""
    return "/" not in name or _RESOURCE_DEFAULT_NAMESPACE_PREFIX in name


def is_extended_resource_name(name: str) -> bool:
    """Kubernetes' IsExtendedResourceName: what a container may request besides cpu/memory."""
    if is_native_resource(name) or name.startswith(_RESOURCE_REQUESTS_PREFIX):
        return False
    return not qualified_name_errors(_RESOURCE_REQUESTS_PREFIX + name)


def check_node_selector(key: str, value: str) -> None:
    errors = qualified_name_errors(key) + label_value_errors(value)
    if errors:
        raise PlatformError(
            f"node selector {key}={value} is not a valid Kubernetes label: {'; '.join(errors)}"
        )


# --- Vertex AI ------------------------------------------------------------------------------


def vertex_accelerator_types() -> list[str]:
    """The accelerator names the installed google-cloud-aiplatform's API accepts."""
    try:
        from google.cloud.aiplatform_v1.types import AcceleratorType
    except ImportError as err:
        raise PlatformError(
            "--platform=vertex checks accelerator names against google-cloud-aiplatform: "
            "pip install 'simclr-kfp[vertex]'"
        ) from err
    return [name for name, value in AcceleratorType.__members__.items() if value != 0]


# Machine type -> (accelerator, count) of Vertex AI custom training's GPU machines, from
# "Configure compute resources for custom training", GPU table
# (https://cloud.google.com/vertex-ai/docs/training/configure-compute#gpu-compatibility-table):
# the A2, A3, A4 and G2 machine types come with a fixed GPU type and count; N1 machines take
# T4, V100, P100 or P4 in the counts listed below.
VERTEX_GPU_MACHINES: dict[str, tuple[str, int]] = {
    **{f"a2-highgpu-{n}g": ("NVIDIA_TESLA_A100", n) for n in (1, 2, 4, 8)},
    "a2-megagpu-16g": ("NVIDIA_TESLA_A100", 16),
    **{f"a2-ultragpu-{n}g": ("NVIDIA_A100_80GB", n) for n in (1, 2, 4, 8)},
    "a3-highgpu-1g": ("NVIDIA_H100_80GB", 1),
    "a3-highgpu-2g": ("NVIDIA_H100_80GB", 2),
    "a3-highgpu-4g": ("NVIDIA_H100_80GB", 4),
    "a3-highgpu-8g": ("NVIDIA_H100_80GB", 8),
    "a3-megagpu-8g": ("NVIDIA_H100_MEGA_80GB", 8),
    "a3-ultragpu-8g": ("NVIDIA_H200_141GB", 8),
    "a4-highgpu-8g": ("NVIDIA_B200", 8),
    **{f"g2-standard-{v}": ("NVIDIA_L4", 1) for v in (4, 8, 12, 16, 32)},
    "g2-standard-24": ("NVIDIA_L4", 2),
    "g2-standard-48": ("NVIDIA_L4", 4),
    "g2-standard-96": ("NVIDIA_L4", 8),
}
VERTEX_N1_GPU_COUNTS: dict[str, tuple[int, ...]] = {
    "NVIDIA_TESLA_T4": (1, 2, 4),
    "NVIDIA_TESLA_V100": (1, 2, 4, 8),
    "NVIDIA_TESLA_P100": (1, 2, 4),
    "NVIDIA_TESLA_P4": (1, 2, 4),
}


def vertex_machine_for(accelerator: str, count: int) -> str | None:
    """The Vertex AI machine type that carries `count` x `accelerator` (None: none does;
    N1 GPUs: the smallest N1 standard machine, which Vertex accepts with them)."""
    for machine, spec in VERTEX_GPU_MACHINES.items():
        if spec == (accelerator, count):
            return machine
    if count in VERTEX_N1_GPU_COUNTS.get(accelerator, ()):
        return "n1-standard-8"
    return None


def check_vertex_machine(machine_type: str, accelerator: str, count: int) -> None:
    """Raises PlatformError (one line) unless Vertex AI's GPU table allows the triple."""
    if not accelerator:
        return
    fixed = VERTEX_GPU_MACHINES.get(machine_type)
    if fixed and fixed == (accelerator, count):
        return
    if machine_type.startswith("n1-") and count in VERTEX_N1_GPU_COUNTS.get(accelerator, ()):
        return
    fits = vertex_machine_for(accelerator, count)
    hint = f"use --vertex_machine_type={fits}" if fits else "no machine type carries that count"
    raise PlatformError(
        f"Vertex AI runs {count} x {accelerator} not on {machine_type or 'no machine type'}: "
        f"{hint} (Vertex AI GPU table, docs/pipelines.md)"
    )


# --- Both -------------------------------------------------------------------------------------


def check_platform(platform: str) -> None:
    if platform not in PLATFORMS:
        raise PlatformError(f"--platform must be one of {', '.join(PLATFORMS)}, got {platform!r}")


def check_accelerator(platform: str, accelerator: str) -> None:
    """Raises PlatformError unless `platform` accepts `accelerator` ("" = no GPU request)."""
    check_platform(platform)
    if not accelerator:
        return
    if platform == KUBEFLOW:
        if not is_extended_resource_name(accelerator):
            raise PlatformError(
                f"--accelerator_type={accelerator} is not a Kubernetes extended resource name "
                f"(the pod's GPU limit), e.g. {DEFAULT_ACCELERATOR[KUBEFLOW]}; choose the GPU "
                f"model with --node_selector={GKE_ACCELERATOR_LABEL}=nvidia-tesla-a100"
            )
        return
    known = vertex_accelerator_types()
    if accelerator not in known:
        raise PlatformError(
            f"--accelerator_type={accelerator} is not a Vertex AI AcceleratorType; "
            f"known: {', '.join(known)}"
        )


def package_platform(accelerators: list[str]) -> str | None:
    """Which platform a compiled package's accelerator names are for (None: either)."""
    for name in accelerators:
        if is_extended_resource_name(name):
            return KUBEFLOW
        if name:
            return VERTEX
    return None


_SOURCE_TAG = re.compile(r":[^/:@]+-g[0-9a-f]{12}(-dirty-[0-9a-f]{8})?$")


def is_pinned_image(image: str) -> bool:
    """Whether the reference names one build: a digest (`@sha256:...`) or our source tag
    (`<version>-g<commit>[-dirty-<hash>]`, source_tag.py). Other tags can be re-pushed."""
    return "@sha256:" in image or bool(_SOURCE_TAG.search(image))


def registry_host(image: str) -> str | None:
    """The registry host of an image reference, None when it has none (Docker Hub implied).

    Docker's own rule (the docker SDK's `auth.split_repo_name`, distribution/reference):
    the first path component is a host when it contains '.' or ':' or is 'localhost'.
    """
    from docker.auth import split_repo_name

    host, _ = split_repo_name(image)
    # split_repo_name reports Docker Hub both when named and when implied; only named counts.
    return host if image.startswith(f"{host}/") else None


# Vertex AI Model Registry (issue 17). The newest prebuilt TensorFlow prediction container
# Vertex AI documents (cloud.google.com/vertex-ai/docs/predictions/pre-built-containers:
# TensorFlow 2.15, CPU; only `:latest` tags are supported there). It serves a SavedModel's
# serving_default through TF Serving's REST API; `image_bytes` ends in `_bytes`, so
# {"instances": [{"image_bytes": {"b64": ...}}]} arrives as the raw file bytes.
VERTEX_TF_SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
_VERTEX_SERVING_IMAGE = re.compile(
    r"^[a-z0-9-]+-docker\.pkg\.dev/vertex-ai/prediction/tf2-(cpu|gpu)\.\d+-\d+:latest$"
)
# Model.displayName: "up to 128 characters long and can consist of any UTF-8 characters"
# (Vertex AI REST reference, projects.locations.models).
VERTEX_DISPLAY_NAME_MAX = 128


def check_vertex_model_upload(display_name: str, serving_image: str) -> None:
    """A Model Registry upload's display name and serving container, or PlatformError."""
    if not display_name.strip() or len(display_name) > VERTEX_DISPLAY_NAME_MAX:
        raise PlatformError(
            f"--vertex_model_display_name must be 1-{VERTEX_DISPLAY_NAME_MAX} characters, "
            f"got {len(display_name)}"
        )
    if '"' in display_name or "\\" in display_name:
        # GCPC's ModelUploadOp splices it verbatim into a JSON string (ConcatPlaceholder).
        raise PlatformError('--vertex_model_display_name must not contain " or \\')
    if not _VERTEX_SERVING_IMAGE.match(serving_image):
        raise PlatformError(
            "--vertex_serving_image must be a Vertex AI prebuilt TensorFlow prediction "
            f"image (REGION-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest), "
            f"got {serving_image}"
        )
