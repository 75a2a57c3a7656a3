"""KFP components: one thin adapter per `simclr` task.

The component functions below are shipped to the container as source code (KFP
lightweight components), so each body imports what it needs and hands over to
`simclr_pipeline.adapters`, which is installed in our images together with `simclr`.
Nothing here imports TensorFlow, so compiling works without it.

Images are chosen at compile time: `build_components(Images(...))` wraps the same
functions for any image repository and tag. `install_kfp_package=False` and no
`packages_to_install`: the images already hold everything, nothing is installed at
run time (air-gapped clusters work).
"""

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from kfp import dsl
from kfp.dsl import (
    HTML,
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
)

from simclr_pipeline import __version__
from simclr_pipeline.source_tag import source_tag

DEFAULT_IMAGE_REPO = "simclr-kfp"
# The version plus the git commit (and a hash of uncommitted changes): see source_tag.py.
DEFAULT_IMAGE_TAG = source_tag(__version__)


@dataclass(frozen=True)
class Images:
    """Container images: `cpu` for data and augmentation (and evaluation when the pipeline
    requests no GPUs); `gpu` for pretraining (and evaluation, with one GPU, when it does)."""

    cpu: str
    gpu: str

    @classmethod
    def from_repo(cls, repo: str = DEFAULT_IMAGE_REPO, tag: str = DEFAULT_IMAGE_TAG) -> "Images":
        """The names `make images` builds: `<repo>/cpu:<tag>` and `<repo>/gpu:<tag>`."""
        repo = repo.rstrip("/")
        return cls(cpu=f"{repo}/cpu:{tag}", gpu=f"{repo}/gpu:{tag}")


@dataclass(frozen=True)
class Components:
    prepare_data: object
    augment: object
    pretrain: object
    evaluate: object
    embed: object
    saved_model_uri: object


# ----------------------------------------------------------------------------------------
# Component functions. Their source is what runs in the container: keep imports inside.
# No parameter defaults: the pipeline passes every argument, and its defaults come from
# presets.GPU alone (a default here would be a second copy that can drift).
# ----------------------------------------------------------------------------------------


def prepare_data(
    source: str,
    dataset: Output[Dataset],
    sha256: str,
    num_shards: int,
    label_fractions: str,
    seed: int,
    image_size: int,
    eval_source: str,
    options: dict,
) -> None:
    """Reads a CIFAR-10 archive, or a folder / bucket prefix / CSV or JSONL list of images,
    and writes TFRecord shards and manifest.json."""
    arguments = dict(locals())  # every parameter, by name (before any other local exists)
    from simclr_pipeline import adapters

    adapters.prepare_data(**arguments)


def augment(
    dataset: Input[Dataset],
    policy: Output[Artifact],
    preview: Output[HTML],
    augment_metrics: Output[Metrics],
    seed: int,
    options: dict,
) -> None:
    """Writes the augmentation policy (policy.json), a preview grid and throughput."""
    from simclr_pipeline import adapters

    adapters.augment(dataset, policy, preview, augment_metrics, seed=seed, options=options)


def pretrain(
    dataset: Input[Dataset],
    policy: Input[Artifact],
    run_id: str,
    model: Output[Model],
    pretrain_metrics: Output[Metrics],
    tensorboard: Output[Markdown],
    encoder: str,
    width_multiplier: float,
    stem: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    temperature: float,
    max_train_examples: int,
    checkpoint_every_steps: int,
    checkpoint_every_seconds: float,
    precision: str,
    strategy: str,
    seed: int,
    tensorboard_root: str,
    checkpoint_root: str,
    num_gpus: int,
    options: dict,
) -> None:
    """SimCLR pretraining; resumes from its checkpoint when retried. num_gpus: the GPUs
    the pipeline requested for this task; > 0 stops the task unless TensorFlow sees one."""
    arguments = dict(locals())  # every parameter, by name (before any other local exists)
    from simclr_pipeline import adapters

    adapters.pretrain(**arguments)


def evaluate(
    dataset: Input[Dataset],
    model: Input[Model],
    run_id: str,
    evaluation: Output[Artifact],
    eval_metrics: Output[Metrics],
    confusion_matrix: Output[ClassificationMetrics],
    report: Output[Markdown],
    plots: Output[HTML],
    gallery: Output[HTML],
    protocols: str,
    baseline: str,
    max_train_examples: int,
    tensorboard_root: str,
    options: dict,
) -> None:
    """kNN / linear / fine-tuning evaluation of the encoder, against a baseline."""
    arguments = dict(locals())  # every parameter, by name (before any other local exists)
    from simclr_pipeline import adapters

    adapters.evaluate(**arguments)


def embed(
    dataset: Input[Dataset],
    model: Input[Model],
    embeddings: Output[Dataset],
    embed_metrics: Output[Metrics],
    splits: str,
    options: dict,
) -> None:
    """The encoder's embeddings of the dataset's images, as Parquet shards."""
    from simclr_pipeline import adapters

    adapters.embed(dataset, model, embeddings, embed_metrics, splits=splits, options=options)


def saved_model_uri(model: Input[Model]) -> str:
    """The durable URI of pretrain's SavedModel (for a Vertex AI Model Registry upload)."""
    from simclr_pipeline import adapters

    return adapters.saved_model_uri(model)


def config_parameters(func: Callable, config_cls: type) -> tuple[str, ...]:
    """The parameters of component `func` that are fields of the task's `config_cls`: the
    pipeline passes each from its own parameter of the same name."""
    fields = {field.name for field in dataclasses.fields(config_cls)}
    return tuple(
        name
        for name, parameter in inspect.signature(func).parameters.items()
        if name in fields and parameter.annotation in (str, int, float, bool)  # not artifacts
    )


def _component(func, image: str):
    return dsl.component(func, base_image=image, install_kfp_package=False)


def build_components(images: Images, evaluate_on_gpu: bool = False) -> Components:
    """The components, running in the given images (evaluate and embed in the GPU image
    when they get a GPU)."""
    return Components(
        prepare_data=_component(prepare_data, images.cpu),
        augment=_component(augment, images.cpu),
        pretrain=_component(pretrain, images.gpu),
        evaluate=_component(evaluate, images.gpu if evaluate_on_gpu else images.cpu),
        embed=_component(embed, images.gpu if evaluate_on_gpu else images.cpu),
        saved_model_uri=_component(saved_model_uri, images.cpu),
    )
