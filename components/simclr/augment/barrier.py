"""A fusion barrier for XLA (used between the batched augmentation's stages)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf


def materialize(x: Any, barrier: tf.Tensor) -> Any:
    """`x`, computed once.

    Without it XLA fuses the crop's gathers into every consumer: each colour plane of
    each jitter slot reads all three planes of the slot before, so the gathers ran
    dozens of times (the whole view ~35x slower on CPU). A conditional is never fused
    into, so its operand is computed into a buffer once. The predicate depends on data
    known only at run time (`barrier`, values >= 0, such as the view's draws) so that
    XLA cannot fold it away; it is always true.
    """
    zeros = lambda: tf.nest.map_structure(tf.zeros_like, x)  # noqa: E731
    return tf.cond(tf.reduce_min(barrier) >= 0.0, lambda: x, zeros)
