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
from collections.abc import Callable
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Markdown, Metrics, Model
from kfp.pipeline_spec import pipeline_spec_pb2

from simclr_pipeline import placement, platforms, presets
from simclr_pipeline.components import build_components
from simclr_pipeline.components import pretrain as pretrain_component
from simclr_pipeline.options import PipelineOptions
from simclr_pipeline.platforms import VERTEX
from simclr_pipeline.presets import PRETRAIN_KNOBS

PIPELINE_NAME = "simclr-cifar10"
RUN_ID = dsl.PIPELINE_JOB_ID_PLACEHOLDER  # resolved per run (KFP backend >= 2.5); same on retries
_POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD
EMBED_SPLITS = "train"  # the embed step's splits (embed_options {"splits": ...} overrides)


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
        placement.cpu_step(data, options)

        aug = ops.augment(
            dataset=data.outputs["dataset"], seed=seed, options=augment_options
        ).set_display_name("augmentation policy")
        aug.set_caching_options(True)
        placement.cpu_step(aug, options)

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
            placement.gpu_step(train, options, _requested_gpus(options, num_gpus) or num_gpus)
            placement.shared_memory(train, options)

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
            placement.gpu_step(evaluation, options, 1)
        else:
            placement.cpu_step(evaluation, options)

        for task in (data, aug, train, evaluation):
            placement.s3_credentials(task, options)
            placement.pull_policy(task, options)

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
        placement.gpu_step(task, options, 1)
    else:
        placement.cpu_step(task, options)
    placement.s3_credentials(task, options)
    placement.pull_policy(task, options)
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
    placement.cpu_step(uri, options)
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


def pipeline_parameters(pipeline) -> dict[str, str]:
    """Parameter name -> KFP type ("STRING", "NUMBER_INTEGER", ...) of a built pipeline."""
    spec = pipeline.pipeline_spec.root.input_definitions.parameters
    enum = pipeline_spec_pb2.ParameterType.ParameterTypeEnum
    return {name: enum.Name(p.parameter_type) for name, p in spec.items()}
