"""LARS optimiser (Keras 3), linear-warmup + cosine schedule, a replica-safe loss scale.

Semantics follow google-research/simclr ``tf2/lars_optimizer.py`` (classic
momentum, no Nesterov) and ``tf2/model.py`` (``WarmUpAndCosineDecay``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import keras
import tensorflow as tf
from keras import ops

# Variable names (the last part of ``variable.path``) of BatchNormalization's
# trainable variables: the pattern "batch_normalization" also matches these, since
# Keras 3 paths use the layer's own name ("block1_bn/gamma"), which need not
# contain "batch_normalization".
_BATCH_NORM_VARIABLE_NAMES = ("gamma", "beta")


class LARS(keras.optimizers.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017), as in SimCLR.

    For each variable ``w`` with gradient ``g`` (the "classic momentum" variant of
    the reference):

        g' = g + weight_decay * w                       (unless excluded from decay)
        trust = trust_coefficient * ||w|| / ||g'||      (if both norms > 0, else 1;
                                                         1 if excluded from adaptation)
        v  = momentum * v + learning_rate * trust * g'
        w  = w - v

    Weight decay is coupled (added to the gradient before the trust ratio), so the
    base class's decoupled ``weight_decay`` stays off. Exclusion patterns are
    ``re.search``-ed against ``variable.path`` (e.g. "encoder/conv2d/kernel");
    "batch_normalization" also matches any variable named gamma/beta.
    ``exclude_from_layer_adaptation=None`` means: same as ``exclude_from_weight_decay``.

    Works under ``tf.distribute`` (Keras all-reduces the gradients in
    ``apply_gradients``) and wrapped in ``keras.optimizers.LossScaleOptimizer``.
    """

    def __init__(
        self,
        learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        trust_coefficient: float = 1e-3,
        exclude_from_weight_decay: Sequence[str] | None = ("batch_normalization", "bias"),
        exclude_from_layer_adaptation: Sequence[str] | None = None,
        name: str = "lars",
        **kwargs,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=None, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.lars_weight_decay = float(weight_decay)
        self.trust_coefficient = float(trust_coefficient)
        self.exclude_from_weight_decay_patterns = tuple(exclude_from_weight_decay or ())
        self.exclude_from_layer_adaptation_patterns = (
            self.exclude_from_weight_decay_patterns
            if exclude_from_layer_adaptation is None
            else tuple(exclude_from_layer_adaptation)
        )

    def build(self, variables: list) -> None:
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")
        # Decided here, on the Keras variables: update_step may get the backend's
        # tf.Variable, whose name lacks the Keras path.
        self._decay_flags = [self.uses_weight_decay(v) for v in variables]
        self._adapt_flags = [self.uses_layer_adaptation(v) for v in variables]

    def update_step(self, gradient, variable, learning_rate) -> None:
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        velocity = self.momentums[index]

        if self.lars_weight_decay and self._decay_flags[index]:
            gradient = gradient + ops.cast(self.lars_weight_decay, variable.dtype) * variable
        trust_ratio = ops.cast(1.0, variable.dtype)
        if self._adapt_flags[index]:
            trust_ratio = self._trust_ratio(variable, gradient)

        self.assign(
            velocity,
            ops.add(
                ops.multiply(ops.cast(self.momentum, variable.dtype), velocity),
                ops.multiply(learning_rate * trust_ratio, gradient),
            ),
        )
        self.assign_sub(variable, velocity)

    def _trust_ratio(self, variable, gradient):
        w_norm = ops.sqrt(ops.sum(ops.square(variable)))
        g_norm = ops.sqrt(ops.sum(ops.square(gradient)))
        one = ops.ones_like(w_norm)
        # Guard the division so the untaken branch cannot produce inf/NaN.
        ratio = self.trust_coefficient * w_norm / ops.where(g_norm > 0, g_norm, one)
        return ops.where(ops.logical_and(w_norm > 0, g_norm > 0), ratio, one)

    def uses_weight_decay(self, variable) -> bool:
        """Whether weight decay applies to ``variable`` (by its path)."""
        return not _matches(variable, self.exclude_from_weight_decay_patterns)

    def uses_layer_adaptation(self, variable) -> bool:
        """Whether the trust ratio applies to ``variable`` (by its path)."""
        return not _matches(variable, self.exclude_from_layer_adaptation_patterns)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "weight_decay": self.lars_weight_decay,
                "trust_coefficient": self.trust_coefficient,
                "exclude_from_weight_decay": list(self.exclude_from_weight_decay_patterns),
                "exclude_from_layer_adaptation": list(self.exclude_from_layer_adaptation_patterns),
            }
        )
        return config


def _matches(variable, patterns: Sequence[str]) -> bool:
    path = getattr(variable, "path", None) or variable.name.split(":")[0]
    name = path.rsplit("/", 1)[-1]
    for pattern in patterns:
        if re.search(pattern, path):
            return True
        if pattern == "batch_normalization" and name in _BATCH_NORM_VARIABLE_NAMES:
            return True
    return False


@keras.saving.register_keras_serializable(package="simclr")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to ``base_lr`` over ``warmup_steps``, then cosine decay
    to 0 at ``total_steps`` (as the reference's ``WarmUpAndCosineDecay``).

    lr(step) = base_lr * step / warmup_steps                         step < warmup
             = base_lr * 0.5 * (1 + cos(pi * (step - warmup) / (total - warmup)))
    and 0 from ``total_steps`` on. ``base_lr`` is the already scaled rate (see
    ``train_config.scaled_learning_rate``).
    """

    def __init__(self, base_lr: float, total_steps: int, warmup_steps: int = 0) -> None:
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                f"need total_steps >= 1 and 0 <= warmup_steps <= total_steps, got "
                f"total_steps={total_steps}, warmup_steps={warmup_steps}"
            )
        self.base_lr = float(base_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        self._cosine = keras.optimizers.schedules.CosineDecay(self.base_lr, decay_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = ops.cast(self.warmup_steps, "float32")
        warm = self.base_lr * step / ops.maximum(warmup, 1.0)
        decayed = self._cosine(ops.maximum(step - warmup, 0.0))
        return ops.where(step < warmup, warm, decayed)

    def get_config(self) -> dict:
        return {
            "base_lr": self.base_lr,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
        }


class GlobalLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras's dynamic loss scale, with the skip decision taken across all replicas.

    Keras 3.15's ``LossScaleOptimizer._tf_apply`` checks each replica's own gradients
    before they are all-reduced (that happens later, inside the inner optimizer) and,
    with merge calls, keeps replica 0's verdict: when only another replica overflows,
    its inf is summed into every replica's update (LARS: trust ratio 0 x inf = NaN).
    Here each replica's "non-finite" flag is all-reduced first, so all replicas skip
    the step together and the scale is halved once; otherwise this is Keras's logic.
    """

    def _tf_apply(self, grads, trainable_variables=None):
        ctx = tf.distribute.get_replica_context()
        if ctx is None or ctx.num_replicas_in_sync == 1:
            return super()._tf_apply(grads, trainable_variables)
        overflowed = ops.cast(ops.logical_not(self.check_finite(grads)), "float32")
        finite = ops.equal(ctx.all_reduce(tf.distribute.ReduceOp.SUM, overflowed), 0.0)

        if tf.__internal__.distribute.strategy_supports_no_merge_call():
            # Every replica holds the same `finite`, so all take the same branch and the
            # all-reduce inside the inner optimizer stays matched.
            ops.cond(
                finite,
                lambda: self._stateful_handle_finite_grads(grads, trainable_variables),
                self._stateful_handle_non_finite_grads,
            )
            return None

        def cross_replica(distribution, finite, grads, trainable_variables):
            # As Keras: the cond runs in the cross-replica context (a replica-context cond
            # cannot hold the inner optimizer's merge_call); `finite` is equal everywhere.
            def apply_fn():
                distribution.extended.call_for_each_replica(
                    self._stateful_handle_finite_grads, args=(grads, trainable_variables)
                )

            finite = distribution.experimental_local_results(finite)[0]
            ops.cond(finite, apply_fn, self._stateful_handle_non_finite_grads)

        ctx.merge_call(cross_replica, args=(finite, grads, trainable_variables))
        return None
