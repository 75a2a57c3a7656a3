"""The evaluation protocols' names and hyper-parameters.

TensorFlow-free: the evaluate task's config inherits `EvalOptions`, and is built and
checked before any TensorFlow module is imported. The protocols themselves are in
`simclr.evaluate`.
"""

from __future__ import annotations

from dataclasses import dataclass

from simclr.knobs import knob

PROTOCOLS = ("knn", "linear", "finetune")
PROTOCOL_NAMES = {"knn": "kNN", "linear": "linear probe", "finetune": "fine-tuning"}


@dataclass
class EvalOptions:
    """Hyper-parameters of the protocols: the evaluate task's flags of the same names."""

    batch_size: int = knob(256, "Batch size for feature extraction.", above=0)
    knn_k: int = knob(200, "Neighbours for the kNN classifier.", above=0)
    knn_temperature: float = knob(0.1, "kNN vote weight exp(sim / T).", above=0)
    linear_c_grid: tuple[float, ...] = knob(
        (0.001, 0.01, 0.1, 1.0),
        "Inverse L2 strengths (scikit-learn C) tried on a held-out 20% of train.",
        above=0,
    )
    linear_augment_copies: int = knob(
        0, "Extra crop+flip views of train added to the linear probe's data.", at_least=0
    )
    finetune_epochs: int = knob(30, "Fine-tuning epochs over each label subset.", at_least=1)
    finetune_batch_size: int = knob(64, "Fine-tuning batch size.", above=0)
    finetune_learning_rate: float = knob(
        0.1, "Learning rate of the linear head (Nesterov SGD, cosine decay).", above=0
    )
    finetune_encoder_learning_rate: float = knob(
        0.01, "Learning rate of the encoder when fine-tuning.", at_least=0
    )
    finetune_augment: bool = knob(True, "Pad-4 random crop + horizontal flip while fine-tuning.")
    seed: int = knob(0, "Seed of the random-init baseline, data splits and fine-tuning.")
