"""The SimCLR pipeline: prepare_data -> augment -> pretrain -> evaluate.

    source --> [prepare-data]  CPU image, cached
                   | dataset (Dataset)
                   +------------------------------+-----------------+
                   v                              |                 |
               [augment]  CPU image, cached       |                 |
                   | policy (Artifact), preview (HTML), metrics     |
                   v                              v                 |
               [pretrain]  GPU image, accelerator x num_gpus,       |
                   |       retried (resumes), not cached            |
                   | model (Model), pretrain_metrics (Metrics),     |
                   | tensorboard (Markdown)                         |
                   v                                                v
               [evaluate]  GPU image + 1 GPU (CPU image  <--------+
                     without GPUs), not cached
                     evaluation (Artifact), eval_metrics (Metrics),
                     confusion_matrix (ClassificationMetrics),
                     report (Markdown), plots (HTML), gallery (HTML)

`build_pipeline(PipelineOptions(...))` makes the pipeline for one platform (Kubeflow or
Vertex AI, whose rules are checked then: `platforms.py`), given images and compile-time
options (accelerator type, Kubernetes node selectors, tolerations and S3 secret,
retries, Vertex AI multi-worker training); the run-time knobs are pipeline parameters,
their defaults in `presets.GPU`.

Caching: data preparation and augmentation are pure functions of their inputs, so
they are cached (a second run with the same source skips the download and
decoding). Pretraining is never cached: a "hit" would silently skip the expensive
part a user asked for. Evaluation is not cached either: its input model is new on
every run, so a hit is impossible, and a forced re-evaluation should really re-run.
"""

import functools
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from kfp import dsl, kubernetes
from kfp.dsl import Artifact, Markdown, Metrics, Model
from kfp.pipeline_spec import pipeline_spec_pb2
from simclr import knobs
from simclr.errors import UserError
from simclr.knobs import knob

from simclr_pipeline import platforms, presets
from simclr_pipeline.components import Images, build_components
from simclr_pipeline.components import pretrain as pretrain_component
from simclr_pipeline.platforms import (  # noqa: F401  (KFP_* re-exported)
    KFP_MINIO_ENDPOINT,
    KFP_MINIO_SECRET,
    KFP_S3_ENDPOINT,
    KFP_S3_SECRET,
    KUBEFLOW,
    S3_SECRET_KEYS,
    VERTEX,
    PlatformError,
)
from simclr_pipeline.presets import PRETRAIN_KNOBS

PIPELINE_NAME = "simclr-cifar10"
_VERTEX_TENSORBOARD = re.compile(r"^projects/[^/]+/locations/[^/]+/tensorboards/[^/]+$")
RUN_ID = dsl.PIPELINE_JOB_ID_PLACEHOLDER  # resolved per run (KFP backend >= 2.5); same on retries
_POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD
EMBED_SPLITS = "train"  # the embed step's splits (embed_options {"splits": ...} overrides)


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


class Outputs(NamedTuple):
    model: Model
    pretrain_metrics: Metrics
    tensorboard: Markdown
    eval_metrics: Metrics
    report: Markdown
    evaluation: Artifact


def build_pipeline(options: PipelineOptions | None = None):
    """The pipeline (a KFP GraphComponent) for the given compile-time options.

    Raises PlatformError (one line) when the options break the platform's rules.
    """
    options = (options or PipelineOptions()).resolved()
    on_gpu = bool(options.accelerator_type)
    ops = build_components(options.images, evaluate_on_gpu=on_gpu)
    pretrain_op = _pretrain_op(ops.pretrain, options)
    d = presets.GPU  # the one source of the parameter defaults

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description=(
            "SimCLR pretraining on CIFAR-10: prepare_data -> augment -> pretrain -> evaluate "
            f"(compiled for {options.platform}; Kubeflow Pipelines backend "
            f">= {platforms.MIN_KFP_BACKEND})"
        ),
    )
    @_with_pretrain_knobs(d)
    def simclr_pipeline(
        source: str = d["source"],
        sha256: str = d["sha256"],
        num_shards: int = d["num_shards"],
        label_fractions: str = d["label_fractions"],
        seed: int = d["seed"],
        image_size: int = d["image_size"],
        eval_source: str = d["eval_source"],
        prepare_options: dict = {},  # noqa: B006
        augment_options: dict = {},  # noqa: B006  (KFP's way to declare a dict parameter)
        num_gpus: int = d["num_gpus"],
        pretrain_options: dict = {},  # noqa: B006
        eval_protocols: str = d["eval_protocols"],
        baseline: str = d["baseline"],
        eval_max_train_examples: int = d["eval_max_train_examples"],
        evaluate_options: dict = {},  # noqa: B006
        run_embed: bool = d["run_embed"],
        embed_options: dict = {},  # noqa: B006
        tensorboard_root: str = d["tensorboard_root"],
        checkpoint_root: str = d["checkpoint_root"],
        pretrain_knobs: dict | None = None,  # the other PRETRAIN_KNOBS: _with_pretrain_knobs
    ) -> Outputs:
        data = ops.prepare_data(
            source=source,
            sha256=sha256,
            num_shards=num_shards,
            label_fractions=label_fractions,
            seed=seed,
            image_size=image_size,
            eval_source=eval_source,
            options=prepare_options,
        ).set_display_name("prepare data")
        data.set_caching_options(True)
        _cpu_step(data, options)

        aug = ops.augment(
            dataset=data.outputs["dataset"], seed=seed, options=augment_options
        ).set_display_name("augmentation policy")
        aug.set_caching_options(True)
        _cpu_step(aug, options)

        train = pretrain_op(
            dataset=data.outputs["dataset"],
            policy=aug.outputs["policy"],
            run_id=RUN_ID,
            seed=seed,
            **pretrain_knobs,
            tensorboard_root=tensorboard_root,
            checkpoint_root=checkpoint_root,
            num_gpus=_requested_gpus(options, num_gpus),
            options=pretrain_options,
            **_custom_job_outputs(options),
        ).set_display_name("SimCLR pretraining")
        train.set_caching_options(False)
        train.set_retry(
            num_retries=options.retries,
            backoff_duration=platforms.RETRY_BACKOFF,
            backoff_factor=platforms.RETRY_BACKOFF_FACTOR,
            backoff_max_duration=options.retry_window,
        )
        if not options.vertex_workers:
            _gpu_step(train, options, _requested_gpus(options, num_gpus) or num_gpus)
            _shared_memory(train, options)

        evaluation = ops.evaluate(
            dataset=data.outputs["dataset"],
            model=train.outputs["model"],
            run_id=RUN_ID,
            protocols=eval_protocols,
            baseline=baseline,
            max_train_examples=eval_max_train_examples,
            tensorboard_root=tensorboard_root,
            options=evaluate_options,
        ).set_display_name("evaluation")
        evaluation.set_caching_options(False)
        if on_gpu:  # fine-tuning a ResNet-50 on 2 CPUs takes hours (README: Evaluation)
            _gpu_step(evaluation, options, 1)
        else:
            _cpu_step(evaluation, options)

        for task in (data, aug, train, evaluation):
            _s3_credentials(task, options)
            _pull_policy(task, options)

        with dsl.If(run_embed == True, "embed"):  # noqa: E712  (a KFP condition, not a bool)
            _embed_step(ops, data, train, embed_options, options)
        if options.vertex_model_display_name:
            _model_upload_steps(ops, train, options)

        return Outputs(
            model=train.outputs["model"],
            pretrain_metrics=train.outputs["pretrain_metrics"],
            tensorboard=train.outputs["tensorboard"],
            eval_metrics=evaluation.outputs["eval_metrics"],
            report=evaluation.outputs["report"],
            evaluation=evaluation.outputs["evaluation"],
        )

    return simclr_pipeline


def _with_pretrain_knobs(defaults: dict) -> Callable:
    """Gives a pipeline function a parameter for each of PRETRAIN_KNOBS it does not declare,
    typed as in the pretrain component and defaulted from `defaults`; the function gets
    them as one dict, `pretrain_knobs`. So a first-class pretrain knob is its
    PretrainConfig field plus its line in the component's signature (which KFP needs
    written out), and the pipeline passes it on unnamed.

    KFP reads a pipeline's parameters from `inspect.signature` and calls it with them
    positionally in that order (kfp 2.17 dsl/graph_component.py, GraphComponent).
    """

    def wrap(pipeline_func: Callable) -> Callable:
        own = inspect.signature(pipeline_func)
        typed = inspect.signature(pretrain_component).parameters
        added = [name for name in PRETRAIN_KNOBS if name not in own.parameters]
        declared = [p for name, p in own.parameters.items() if name != "pretrain_knobs"]
        generated = [
            inspect.Parameter(
                name, _POSITIONAL, annotation=typed[name].annotation, default=defaults[name]
            )
            for name in added
        ]

        @functools.wraps(pipeline_func)
        def pipeline(*args: Any) -> Any:
            values = dict(zip(pipeline.__signature__.parameters, args, strict=True))
            knobs_given = {name: values.pop(name) for name in added}
            return pipeline_func(**values, pretrain_knobs=knobs_given)

        pipeline.__signature__ = own.replace(parameters=declared + generated)
        return pipeline

    return wrap


def _embed_step(ops, data, train, embed_options, options: PipelineOptions):
    """Embeddings of the training set (Parquet shards), sized like evaluation."""
    task = ops.embed(
        dataset=data.outputs["dataset"],
        model=train.outputs["model"],
        splits=EMBED_SPLITS,
        options=embed_options,
    ).set_display_name("embeddings")
    # Not cached: like evaluation, its input model is new on every run.
    task.set_caching_options(False)
    if options.accelerator_type:
        _gpu_step(task, options, 1)
    else:
        _cpu_step(task, options)
    _s3_credentials(task, options)
    _pull_policy(task, options)
    return task


def _model_upload_steps(ops, train, options: PipelineOptions):
    """Vertex AI Model Registry: GCPC's documented way for a model made outside Vertex
    (ModelUploadOp's docstring): a dsl.importer of a google.UnmanagedContainerModel whose
    metadata names the serving container, uploaded with ModelUploadOp."""
    # Imported only when asked for: google-cloud-pipeline-components is the [vertex] extra.
    from google_cloud_pipeline_components import _placeholders
    from google_cloud_pipeline_components.types.artifact_types import UnmanagedContainerModel
    from google_cloud_pipeline_components.v1.model import ModelUploadOp

    uri = ops.saved_model_uri(model=train.outputs["model"]).set_display_name("SavedModel URI")
    uri.set_caching_options(False)
    _cpu_step(uri, options)
    imported = dsl.importer(
        artifact_uri=uri.output,
        artifact_class=UnmanagedContainerModel,
        metadata={"containerSpec": {"imageUri": options.vertex_serving_image}},
    ).set_display_name("SavedModel as an unmanaged container model")
    upload = ModelUploadOp(
        display_name=options.vertex_model_display_name,
        description=(
            "SimCLR encoder (simclr-kfp): serving_default takes image_bytes (JPEG/PNG, "
            "b64) and returns embedding (L2-normalised) and features"
        ),
        unmanaged_container_model=imported.outputs["artifact"],
        # The PipelineJob's own region (the component's default is us-central1).
        location=_placeholders.LOCATION_PLACEHOLDER,
    ).set_display_name("upload to the Model Registry")
    upload.set_caching_options(False)  # every run's encoder is a new model version
    return upload


def _pretrain_op(component, options: PipelineOptions):
    """The pretrain component, or its Vertex AI multi-worker CustomJob wrapper."""
    if not options.vertex_workers:
        return component
    # Imported only when asked for: google-cloud-pipeline-components is the [vertex] extra.
    from google_cloud_pipeline_components import _placeholders
    from google_cloud_pipeline_components.v1.custom_job import (
        create_custom_training_job_from_component,
    )

    return create_custom_training_job_from_component(
        component,
        display_name="simclr-pretrain",
        replica_count=options.vertex_workers,
        machine_type=options.vertex_machine_type,
        accelerator_type=options.accelerator_type,
        accelerator_count=options.vertex_accelerator_count if options.accelerator_type else 0,
        # The PipelineJob's service account and network (submit --service_account,
        # --network), resolved by Vertex AI at run time; without them the job would run
        # as the Custom Code Service Agent, outside the submitter's network.
        service_account=_placeholders.SERVICE_ACCOUNT_PLACEHOLDER,
        network=_placeholders.NETWORK_PLACEHOLDER,
        # A restarted worker must restart the whole job: MultiWorkerMirroredStrategy
        # cannot re-admit one worker; everyone resumes from the shared checkpoint.
        restart_job_on_worker_restart=True,
        # Vertex AI TensorBoard: the job uploads AIP_TENSORBOARD_LOG_DIR (under
        # base_output_directory, set per run in the pipeline) to this instance.
        tensorboard=options.vertex_tensorboard,
    )


def _custom_job_outputs(options: PipelineOptions) -> dict:
    """The CustomJob's base_output_directory, run-scoped (Vertex AI sets
    AIP_TENSORBOARD_LOG_DIR=<it>/logs, which a TensorBoard instance needs)."""
    if not options.vertex_tensorboard:
        return {}
    return {"base_output_directory": f"{dsl.PIPELINE_ROOT_PLACEHOLDER}/{RUN_ID}/pretrain-job"}


def _requested_gpus(options: PipelineOptions, num_gpus):
    """The GPUs pretrain asks the platform for; pretrain refuses to run on CPU when > 0.
    On Vertex AI a compiled constant (--vertex_accelerator_count), else `num_gpus`."""
    if not options.accelerator_type:
        return 0
    return options.vertex_accelerator_count if options.platform == VERTEX else num_gpus


def _cpu_step(task, options: PipelineOptions) -> None:
    task.set_cpu_request(options.step_cpu).set_cpu_limit(options.step_cpu)
    task.set_memory_request(options.step_memory).set_memory_limit(options.step_memory)


def _gpu_step(task, options: PipelineOptions, num_gpus) -> None:
    task.set_cpu_request(options.pretrain_cpu).set_cpu_limit(options.pretrain_cpu)
    task.set_memory_request(options.pretrain_memory).set_memory_limit(options.pretrain_memory)
    if options.accelerator_type:
        task.set_accelerator_type(options.accelerator_type).set_accelerator_limit(num_gpus)
    _kubernetes_placement(task, options)


# NCCL (MirroredStrategy with more than one GPU) exchanges data through /dev/shm, which a
# container gets at 64 MiB by default (kubeflow/pipelines#9147): a memory-backed emptyDir
# instead. `num_gpus` is a run-time parameter, so it is mounted on every GPU pretrain pod;
# an unused tmpfs costs nothing (its pages count against the memory limit only when written).
SHM_SIZE = "8Gi"


def _shared_memory(task, options: PipelineOptions) -> None:
    if options.platform == KUBEFLOW and options.accelerator_type:
        kubernetes.empty_dir_mount(
            task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=SHM_SIZE
        )


def _kubernetes_placement(task, options: PipelineOptions) -> None:
    for key, value in options.node_selector:
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for tol in options.tolerations:
        kubernetes.add_toleration(
            task, key=tol.key, operator=tol.operator, value=tol.value, effect=tol.effect
        )


def _pull_policy(task, options: PipelineOptions) -> None:
    """Kubernetes pulls a non-`latest` tag only when the node lacks it (IfNotPresent): a tag
    that may have been re-pushed is pulled every time, so nodes do not run old code."""
    images = (options.images.cpu, options.images.gpu)
    if options.platform == KUBEFLOW and not all(map(platforms.is_pinned_image, images)):
        kubernetes.set_image_pull_policy(task, "Always")


def _s3_credentials(task, options: PipelineOptions) -> None:
    """AWS_* variables for boto3 from a Kubernetes Secret (Kubeflow only)."""
    if options.s3_secret:
        kubernetes.use_secret_as_env(
            task, secret_name=options.s3_secret, secret_key_to_env=dict(S3_SECRET_KEYS)
        )
    if options.s3_endpoint_url:
        task.set_env_variable("AWS_ENDPOINT_URL", options.s3_endpoint_url)


def pipeline_parameters(pipeline) -> dict[str, str]:
    """Parameter name -> KFP type ("STRING", "NUMBER_INTEGER", ...) of a built pipeline."""
    spec = pipeline.pipeline_spec.root.input_definitions.parameters
    enum = pipeline_spec_pb2.ParameterType.ParameterTypeEnum
    return {name: enum.Name(p.parameter_type) for name, p in spec.items()}
