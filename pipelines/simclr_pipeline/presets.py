"""Named sets of pipeline parameters (`--preset=NAME`); `--param` overrides them.

- "gpu": SimCLR's CIFAR-10 run for a GPU cluster: ResNet-50, batch 1024, 1000 epochs.
  It is the one source of the pipeline's parameter defaults (`pipeline.py` reads it); its
  pretrain, prepare_data and evaluate values are the task configs' own defaults.
- "demo": a CPU-sized run on the whole CIFAR-10 archive: ResNet-18 at width 1/8 on
  10,000 images for 4 epochs, kNN + linear evaluation on 10,000 images against a
  randomly initialised baseline. A few minutes on a laptop.
- "test": tiny, for the end-to-end test (seconds of training).
"""

import dataclasses
from typing import Any

from simclr.tasks.evaluate import EvaluateConfig
from simclr.tasks.prepare_data import PrepareDataConfig
from simclr.train_config import PretrainConfig

from simclr_pipeline import components

# The pretrain component's parameters that are PretrainConfig fields: the pipeline gets a
# parameter of each name, typed as the component's, and forwards it
# (pipeline._with_pretrain_knobs). A knob is first-class by being in both.
PRETRAIN_KNOBS = components.config_parameters(components.pretrain, PretrainConfig)


def _defaults(config_cls: type) -> dict[str, Any]:
    """The fields' defaults of a task config (those that have one)."""
    fields = dataclasses.fields(config_cls)
    return {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}


def _comma_list(values: tuple) -> str:
    """A tuple default as the comma-separated string a pipeline parameter carries."""
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


_PREPARE, _EVALUATE = _defaults(PrepareDataConfig), _defaults(EvaluateConfig)
OFFICIAL_CIFAR10_URL = _PREPARE["source"]

GPU: dict[str, Any] = {
    "source": OFFICIAL_CIFAR10_URL,
    "sha256": "",
    "num_shards": 16,
    "label_fractions": _comma_list(_PREPARE["label_fractions"]),
    "seed": _PREPARE["seed"],
    # The training resolution (the CIFAR-10 archive: 32 only) and the encoder stem (auto:
    # CIFAR stem at <= 32 px, ImageNet stem above).
    "image_size": 32,
    # A separate labelled image source to evaluate on (prepare_data --eval_source); "":
    # evaluate on the training source's own test split.
    "eval_source": "",
    # The pretrain parameters (encoder, epochs, batch_size, ...): PretrainConfig's defaults.
    **{name: getattr(PretrainConfig(), name) for name in PRETRAIN_KNOBS if name != "seed"},
    "num_gpus": 1,
    # Fine-tuning a ResNet-50 (30 epochs x 2 label subsets) needs the GPU that evaluate
    # gets when the pipeline is compiled with an accelerator (README: Evaluation cost).
    "eval_protocols": _comma_list(_EVALUATE["protocols"]),
    "baseline": _EVALUATE["baseline"],
    "eval_max_train_examples": 0,
    "run_embed": True,  # embeddings of the training set after pretraining (Parquet)
    "tensorboard_root": "",
    "checkpoint_root": "",
}

DEMO: dict[str, Any] = {
    "num_shards": 8,
    "encoder": "resnet18",
    "width_multiplier": 0.125,
    "epochs": 4,
    "batch_size": 256,
    "learning_rate": 1.0,
    "temperature": 0.5,
    "max_train_examples": 10000,
    "checkpoint_every_steps": 20,
    "precision": "float32",
    "pretrain_options": {"warmup_epochs": 0.5, "monitor_every_epochs": 1, "log_every_steps": 5},
    "num_gpus": 0,
    "eval_protocols": "knn,linear",
    "baseline": "random_init",
    "eval_max_train_examples": 10000,
}

TEST: dict[str, Any] = {
    "num_shards": 2,
    "label_fractions": "0.1",
    "encoder": "resnet18",
    "width_multiplier": 0.125,
    "epochs": 1,
    "batch_size": 64,
    "learning_rate": 0.5,
    "temperature": 0.5,
    "max_train_examples": 256,
    "checkpoint_every_steps": 2,
    "precision": "float32",
    "augment_options": {"benchmark_seconds": 0.2, "num_preview_images": 4},
    "pretrain_options": {"warmup_epochs": 0.0, "monitor_every_epochs": 0, "log_every_steps": 1},
    "num_gpus": 0,
    "eval_protocols": "knn,linear",
    "baseline": "random_init",
    "eval_max_train_examples": 300,
    "evaluate_options": {"embedding": "pca", "linear_c_grid": "0.1"},
}

PRESETS: dict[str, dict[str, Any]] = {"gpu": GPU, "demo": DEMO, "test": TEST}


def preset(name: str) -> dict[str, Any]:
    """A copy of the named preset's parameters; KeyError names the known presets."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return dict(PRESETS[name])
