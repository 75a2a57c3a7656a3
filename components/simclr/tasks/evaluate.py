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

Label-free figures (``simclr.quality``: alignment, uniformity, effective rank, own-view
retrieval) are computed for every dataset, on a seeded sample of at most
``--label_free_max_images`` test images, for the encoder and its random-init baseline.

Data without labels (an image dataset whose manifest says ``"labelled": false``): the
protocols need labels, so evaluate logs one line naming the skipped ones and reports
the label-free figures and the gallery only; the run succeeds. ``--data_dir`` may be
prepare_data's CIFAR-10 layout (manifest format_version 1) or an image dataset
(format_version 2, ``simclr.images``; decoded and centre-cropped as the SavedModel
does, at the encoder's input size). Without a test split, a seeded tenth of train
(at most 1,000 images) is held out as the queries. A dataset prepared with
``--eval_source`` says so in its manifest's ``evaluation`` entry: evaluate then scores
on that labelled dataset (``DIR/eval/``), not on the training images.

Files written to ``--output_dir`` (atomically, ``metrics.json`` last):

- ``metrics.json``: ``knn_top1``, ``knn_top5``, ``linear_top1``, ``linear_top5``,
  ``finetune_top1_<fraction>`` (only the protocols run; fractions in [0, 1]),
  ``alignment``, ``uniformity``, ``effective_rank``, ``view_retrieval_top1``,
  ``baseline`` (the same keys, when a baseline ran), ``labelled``, ``num_train``,
  ``num_test``, ``encoder`` ({encoder, width_multiplier, feature_dim}),
  ``pretrain_steps`` (when the model dir has pretrain's metrics.json), ``model_dir``,
  ``data_dir``, ``settings`` (with ``protocols_skipped``, ``label_free_num_images``,
  ``gallery`` {queries, k, map_method, label_agreement per encoder}).
- ``confusion_matrix.json`` (labelled data only): ``{"class_names", "matrix" (rows:
  true class, columns: predicted), "per_class_accuracy", "protocol"}``, from the linear
  probe (else kNN, else the largest fine-tuning fraction); for KFP's
  ``log_confusion_matrix``; and ``confusion_matrix.png``.
- ``embedding.png`` (2-D t-SNE or PCA of the test features, coloured by class) and
  ``report.md`` (which references them and the gallery).
- ``gallery.html`` (``GALLERY_HTML``; unless ``--gallery=false``): ``simclr.gallery``'s
  self-contained page: ``--gallery_queries`` test images, each with its
  ``--gallery_neighbours`` nearest train images, pretrained and random init side by
  side, and a 2-D map (UMAP when umap-learn is installed, else PCA) of the train
  features coloured by label.

With ``--tensorboard_dir`` the scalars also go to TensorBoard, run ``eval`` under it
(tags ``eval/knn_top1``, ``eval/alignment``, ``eval/baseline/knn_top1``, ...) at the
pretraining step, and the gallery as images (``eval/gallery/<encoder>``: rows of query |
neighbours; ``eval/map/<encoder>``).

This module holds the config and its checks (TensorFlow-free); the run is
``simclr.evaluation_run`` (data: ``simclr.eval_inputs``, protocols: ``simclr.evaluate``,
files: ``simclr.eval_outputs`` and ``simclr.report``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from absl import flags

from simclr import coerce, knobs, storage
from simclr.errors import UserError
from simclr.eval_options import PROTOCOLS, EvalOptions
from simclr.knobs import knob
from simclr.tasks._app import dataclass_from_flags, define_dataclass_flags, run_task

BASELINES = ("random_init", "none")
EMBEDDINGS = ("tsne", "pca")


@dataclass(kw_only=True)
class EvaluateConfig(EvalOptions):
    """The task's flags: where to read and write, what to run, and (inherited) the
    protocols' own hyper-parameters, `simclr.eval_options.EvalOptions`. The tuple fields
    also take a comma-separated string (as the flags do); `run` normalises them."""

    data_dir: str = knob(help="prepare_data output (local, gs:// or s3://).")
    model_dir: str = knob(help="pretrain's --output_dir, or the encoder/ directory inside it.")
    output_dir: str = knob(
        help="Where metrics.json, confusion_matrix.json/png, embedding.png, report.md, "
        "gallery.html go."
    )
    protocols: tuple[str, ...] = knob(PROTOCOLS, "Comma-separated subset of knn,linear,finetune.")
    baseline: str = knob(
        "random_init",
        "random_init: also evaluate a randomly initialised encoder of the same "
        "architecture; none: skip.",
        choices=BASELINES,
    )
    baseline_protocols: tuple[str, ...] = knob(
        ("knn", "linear"), "Protocols the baseline runs (those also in --protocols)."
    )
    label_fractions: tuple[float, ...] = knob(
        (), "Label subsets to fine-tune on (default: all in the manifest)."
    )
    max_train_examples: int | None = knob(
        None,
        "Use a random N of the train examples (and of each label subset); 0: all.",
        at_least=0,
    )
    max_test_examples: int | None = knob(
        None, "Use a random N of the test examples; 0: all.", at_least=0
    )
    tensorboard_dir: str | None = knob(
        None, "Also write the scalars here (run 'eval'; local, gs:// or s3://)."
    )
    embedding: str = knob("tsne", "2-D embedding plot method: tsne or pca.", choices=EMBEDDINGS)
    embedding_max_points: int = knob(
        2000, "Test points in the embedding plot (random subsample).", above=0
    )
    label_free_max_images: int = knob(
        2000, "Test images (seeded sample) for the label-free figures.", at_least=2
    )
    gallery: bool = knob(True, "Write gallery.html (and the gallery images to TensorBoard).")
    gallery_queries: int = knob(16, "Query images (test split) in the gallery.", above=0)
    gallery_neighbours: int = knob(8, "Nearest train images shown per query.", above=0)


def define_flags() -> None:
    """Defines the flags (skipping names another task in this process already defined)."""
    define_dataclass_flags(EvaluateConfig)


_REQUIRED = ("data_dir", "model_dir", "output_dir")


def config_from_flags(values: flags.FlagValues) -> EvaluateConfig:
    _fractions(values["label_fractions"].value)  # its own message, before the generic one
    return dataclass_from_flags(EvaluateConfig, values)


def checked(config: EvaluateConfig) -> EvaluateConfig:
    """`config` with its tuple fields as tuples (protocols in PROTOCOLS order); raises
    UserError naming the flag for the first bad value."""
    for name in _REQUIRED:
        if not getattr(config, name):
            raise UserError(f"--{name} is required")
    knobs.check(config)
    protocols = _names(config.protocols, "protocols")
    if not protocols:
        raise UserError("--protocols is empty")
    return replace(
        config,
        protocols=protocols,
        baseline_protocols=_names(config.baseline_protocols, "baseline_protocols"),
        label_fractions=_fractions(config.label_fractions),
    )


def _names(value: Any, flag: str) -> tuple[str, ...]:
    items = coerce.to_type(value or (), tuple[str, ...], f"--{flag}")
    unknown = [v for v in items if v not in PROTOCOLS]
    if unknown:
        raise UserError(
            f"--{flag}: unknown {', '.join(unknown)} (choose from {', '.join(PROTOCOLS)})"
        )
    return tuple(p for p in PROTOCOLS if p in items)


def _fractions(value: Any) -> tuple[float, ...]:
    try:
        return coerce.to_type(value or (), tuple[float, ...], "--label_fractions")
    except UserError:
        shown = value if isinstance(value, str) else ",".join(map(str, value))
        raise UserError(
            f"--label_fractions must be comma-separated numbers, got {shown!r}"
        ) from None


def run(config: EvaluateConfig) -> dict[str, Any]:
    """Evaluates the encoder; writes the output files; returns metrics.json's content."""
    config = checked(config)
    storage.check_writable(config.output_dir, "--output_dir")  # before any work
    if config.tensorboard_dir:  # written after metrics.json: a failure there would be late
        storage.check_writable(config.tensorboard_dir, "--tensorboard_dir")
    from simclr import evaluation_run  # imports TensorFlow: only after the flags are checked

    return evaluation_run.run(config)


def main(argv: list[str] | None = None) -> None:
    run_task(define_flags, config_from_flags, run, argv)


if __name__ == "__main__":
    main()
