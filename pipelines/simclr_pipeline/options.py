"""Compile-time options of the pipeline (`PipelineOptions`): the platform, images,
resources, retries, Kubernetes placement, S3 credentials and Vertex AI custom jobs.

They shape the YAML and are not run parameters. Each field is a knob (default, help,
rule) from which `simclr-kfp compile`'s flags are built; `resolved()` fills in the
platform's defaults and checks its rules (`platforms.py`).
"""

import re
from dataclasses import dataclass, field, replace

from simclr import knobs
from simclr.errors import UserError
from simclr.knobs import knob

from simclr_pipeline import platforms
from simclr_pipeline.components import Images
from simclr_pipeline.platforms import (
    KFP_S3_ENDPOINT,
    KFP_S3_SECRET,
    KUBEFLOW,
    VERTEX,
    PlatformError,
)

_VERTEX_TENSORBOARD = re.compile(r"^projects/[^/]+/locations/[^/]+/tensorboards/[^/]+$")


@dataclass(frozen=True)
class Toleration:
    key: str | None = None
    operator: str = "Equal"  # or "Exists"
    value: str | None = None
    effect: str | None = None  # NoSchedule | PreferNoSchedule | NoExecute

    @classmethod
    def parse(cls, text: str) -> "Toleration":
        """`key=value:Effect`, `key:Effect` (operator Exists), or `key=value`."""
        spec, _, effect = text.partition(":")
        key, eq, value = spec.partition("=")
        if not key and not effect:
            raise ValueError(f"bad toleration {text!r}; expected key=value:Effect")
        if eq:
            return cls(key=key, operator="Equal", value=value, effect=effect or None)
        return cls(key=key or None, operator="Exists", effect=effect or None)


# PipelineOptions fields set by compile flags of their own shape (a repo and tag, repeatable
# KEY=VALUE pairs); every other field is one flag of its name, built from the field.
STRUCTURED_OPTIONS = ("images", "node_selector", "tolerations")


@dataclass(frozen=True)
class PipelineOptions:
    """Compile-time settings (they shape the YAML; they are not run parameters).

    The defaults here are the only ones: the CLI's compile flags are built from them.
    """

    platform: str = knob(
        platforms.DEFAULT_PLATFORM,
        "the platform the YAML is for; its rules are checked now",
        choices=platforms.PLATFORMS,
    )
    images: Images = field(default_factory=Images.from_repo)  # --image_repo/_tag, --*_image
    accelerator_type: str | None = knob(
        None,
        "GPU request: Kubeflow a Kubernetes resource name (default "
        f"{platforms.DEFAULT_ACCELERATOR[platforms.KUBEFLOW]}), Vertex AI an AcceleratorType "
        f"(default {platforms.DEFAULT_ACCELERATOR[platforms.VERTEX]}); '' or none: no GPU",
    )
    # Requests must fit what an 8-vCPU GPU node (g2-standard-8: 32 GB, n1-standard-8: 30 GB)
    # can allocate after the kubelet's reserve and the system pods, or the pod stays Pending.
    pretrain_cpu: str = knob("6", "CPU of the GPU steps")
    pretrain_memory: str = knob("24G", "memory of the GPU steps")
    step_cpu: str = knob("2", "CPU of the other steps (evaluate too, without a GPU)")
    step_memory: str = knob("8G", "memory of the other steps")
    retries: int = knob(3, "retries of pretrain (it resumes)", at_least=0)
    retry_window: str = knob(
        "",
        "pretrain's backoff_max_duration (default: Kubeflow "
        f"{platforms.RETRY_WINDOW[platforms.KUBEFLOW]}, a deadline from the first attempt's "
        f"start that must cover all of training; Vertex AI "
        f"{platforms.RETRY_WINDOW[platforms.VERTEX]}, the longest wait between retries)",
    )
    # Kubernetes placement of the GPU pods (Kubeflow only): --node_selector, --toleration.
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    # None: KFP's own store (its Secret in the run's namespace and SeaweedFS), which a stock
    # install's default pipeline root (minio://mlpipeline/...) needs.
    s3_secret: str | None = knob(
        None,
        "Kubeflow: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in every step from this "
        "Kubernetes Secret's accesskey/secretkey (default: KFP's own, "
        f"{platforms.KFP_S3_SECRET}, present in every profile namespace; 'none' for a gs:// "
        "pipeline root without it)",
    )
    s3_endpoint_url: str | None = knob(
        None,
        "Kubeflow: AWS_ENDPOINT_URL of every step (default with KFP's secret: its "
        f"SeaweedFS, {platforms.KFP_S3_ENDPOINT}; 'none': AWS's own endpoints)",
    )
    vertex_workers: int = knob(
        0,
        "Vertex AI: run pretrain as a CustomJob with N replicas (MultiWorkerMirroredStrategy)",
        at_least=0,
    )
    vertex_machine_type: str = knob(
        "",
        "Vertex AI: machine of the GPU step (default: the one Vertex's GPU table, "
        "platforms.VERTEX_GPU_MACHINES, pairs with --accelerator_type x "
        "--vertex_accelerator_count, e.g. a2-highgpu-1g)",
    )
    # A pipeline parameter as resourceCount is not documented on Vertex AI.
    vertex_accelerator_count: int = knob(
        1, "Vertex AI: GPUs per replica, compiled in (the num_gpus parameter is Kubeflow's)"
    )
    vertex_tensorboard: str = knob(
        "",
        "Vertex AI: run pretrain as a CustomJob uploading its logs to this TensorBoard, "
        "projects/P/locations/L/tensorboards/ID (Vertex sets AIP_TENSORBOARD_LOG_DIR)",
    )
    vertex_model_display_name: str = knob(
        "",
        "Vertex AI: upload the SavedModel to the Model Registry under this name "
        "(GCPC ModelUploadOp; default: no upload)",
    )
    vertex_serving_image: str = knob(
        platforms.VERTEX_TF_SERVING_IMAGE,
        "Vertex AI: the prebuilt TensorFlow prediction container of the uploaded model",
    )

    def resolved(self) -> "PipelineOptions":
        """These options with the platform's defaults filled in, checked against its rules."""
        platforms.check_platform(self.platform)
        accelerator = self.accelerator_type
        if accelerator is None:
            accelerator = platforms.DEFAULT_ACCELERATOR[self.platform]
        platforms.check_accelerator(self.platform, accelerator)
        try:
            knobs.check(self)
        except UserError as err:
            raise PlatformError(str(err)) from None
        if self.platform == KUBEFLOW and self.vertex_workers:
            raise PlatformError("--vertex_workers needs --platform=vertex")
        if self.platform == VERTEX and (
            self.node_selector or self.tolerations or self._none_is_empty(self.s3_secret)
        ):
            raise PlatformError(
                "--node_selector, --toleration and --s3_secret are Kubernetes settings: "
                "use them with --platform=kubeflow"
            )
        for key, value in self.node_selector:
            platforms.check_node_selector(key, value)
        vertex = self._vertex_settings(accelerator)
        secret, endpoint = self._s3_settings()
        if endpoint and not endpoint.startswith(("http://", "https://")):
            raise PlatformError(f"--s3_endpoint_url must be http(s)://, got {endpoint}")
        return replace(
            self,
            accelerator_type=accelerator,
            retry_window=self.retry_window or platforms.RETRY_WINDOW[self.platform],
            s3_secret=secret,
            s3_endpoint_url=endpoint,
            **vertex,
        )

    def _vertex_settings(self, accelerator: str) -> dict:
        """vertex_workers / vertex_machine_type resolved and checked (Vertex AI only)."""
        if self.platform != VERTEX:
            if self.vertex_tensorboard:
                raise PlatformError("--vertex_tensorboard needs --platform=vertex")
            if self.vertex_model_display_name:
                raise PlatformError("--vertex_model_display_name needs --platform=vertex")
            return {}
        if self.vertex_model_display_name:
            platforms.check_vertex_model_upload(
                self.vertex_model_display_name, self.vertex_serving_image
            )
        workers = self.vertex_workers
        if self.vertex_tensorboard:
            if not _VERTEX_TENSORBOARD.match(self.vertex_tensorboard):
                raise PlatformError(
                    "--vertex_tensorboard must be projects/P/locations/L/tensorboards/ID, "
                    f"got {self.vertex_tensorboard}"
                )
            workers = max(workers, 1)  # only a CustomJob uploads to a TensorBoard instance
        count = self.vertex_accelerator_count
        if accelerator and count < 1:
            raise PlatformError(f"--vertex_accelerator_count must be >= 1, got {count}")
        machine = self.vertex_machine_type
        if accelerator and not machine:
            machine = platforms.vertex_machine_for(accelerator, count) or ""
        if accelerator and (workers or self.vertex_machine_type):
            platforms.check_vertex_machine(machine, accelerator, count)
        elif accelerator and not machine:
            platforms.check_vertex_machine("", accelerator, count)
        return {"vertex_workers": workers, "vertex_machine_type": machine or "n1-standard-8"}

    def _s3_settings(self) -> tuple[str, str]:
        """(secret, endpoint) with the platform defaults filled in; "" = none."""
        if self.platform != KUBEFLOW:
            return "", self._none_is_empty(self.s3_endpoint_url) or ""
        secret = KFP_S3_SECRET if self.s3_secret is None else self._none_is_empty(self.s3_secret)
        endpoint = self.s3_endpoint_url
        if endpoint is None:  # KFP's store when its secret is used, else AWS's own endpoints
            endpoint = KFP_S3_ENDPOINT if secret == KFP_S3_SECRET else ""
        return secret, self._none_is_empty(endpoint)

    @staticmethod
    def _none_is_empty(value: str | None) -> str:
        return "" if value is None or value.strip().lower() in ("", platforms.NONE) else value
