"""LARS against hand computations, exclusions, loss scaling; WarmupCosine; lr scaling."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from simclr.optim import LARS, WarmupCosine, scaled_learning_rate

LR, MOMENTUM, WD, ETA = 0.5, 0.9, 0.01, 0.001


def _variables():
    """A Dense (kernel, bias) and a BatchNorm (gamma, beta) whose names lack
    "batch_normalization", with non-trivial values."""
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(2, name="fc"),
            keras.layers.BatchNormalization(name="block1_bn"),
        ],
        name="net",
    )
    rng = np.random.default_rng(0)
    for v in model.trainable_variables:
        v.assign(rng.normal(size=v.shape).astype(np.float32))
    return model.trainable_variables


def _grads(variables, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=v.shape).astype(np.float32) for v in variables]


def _lars_reference(w, g, v, decay_and_adapt: bool):
    """One step of the reference LARS (classic momentum) in float64 NumPy."""
    w, g = w.astype(np.float64), g.astype(np.float64)
    trust = 1.0
    if decay_and_adapt:
        g = g + WD * w
        trust = ETA * np.linalg.norm(w) / np.linalg.norm(g)
    v = MOMENTUM * v + LR * trust * g
    return w - v, v


def _step(opt, variables, grads):
    opt.apply_gradients(zip([tf.constant(g) for g in grads], variables, strict=True))


def test_two_steps_match_hand_computation_with_exclusions():
    variables = _variables()
    paths = [v.path for v in variables]
    assert paths == ["net/fc/kernel", "net/fc/bias", "net/block1_bn/gamma", "net/block1_bn/beta"]
    adapted = [True, False, False, False]  # only the kernel gets decay and the trust ratio
    opt = LARS(LR, momentum=MOMENTUM, weight_decay=WD, trust_coefficient=ETA)
    assert [opt.uses_weight_decay(v) for v in variables] == adapted
    assert [opt.uses_layer_adaptation(v) for v in variables] == adapted

    weights = [v.numpy() for v in variables]
    velocities = [np.zeros_like(w, dtype=np.float64) for w in weights]
    for seed in (1, 2):  # the second step checks the momentum buffer
        grads = _grads(variables, seed)
        _step(opt, variables, grads)
        for i, (w, g) in enumerate(zip(weights, grads, strict=True)):
            weights[i], velocities[i] = _lars_reference(w, g, velocities[i], adapted[i])
        for var, want in zip(variables, weights, strict=True):
            np.testing.assert_allclose(var.numpy(), want, rtol=1e-5, atol=1e-7, err_msg=var.path)


def test_excluded_variables_take_plain_momentum_sgd_steps():
    variables = _variables()
    before = [v.numpy() for v in variables]
    grads = _grads(variables, 3)
    # Huge weight decay: any leak into bias/gamma/beta would show.
    _step(LARS(LR, weight_decay=100.0), variables, grads)
    for var, w, g in list(zip(variables, before, grads, strict=True))[1:]:
        np.testing.assert_allclose(var.numpy(), w - LR * g, rtol=1e-6, err_msg=var.path)


def test_trust_ratio_is_one_for_zero_weights_and_custom_exclusions():
    kernel = keras.Variable(np.zeros((2, 2), np.float32), name="kernel")
    grad = np.full((2, 2), 2.0, np.float32)
    _step(LARS(LR, weight_decay=WD), [kernel], [grad])
    np.testing.assert_allclose(kernel.numpy(), -LR * grad)  # ||w|| = 0 -> trust 1

    opt = LARS(LR, exclude_from_weight_decay=("kernel",), exclude_from_layer_adaptation=())
    assert not opt.uses_weight_decay(kernel) and opt.uses_layer_adaptation(kernel)


def test_wrapped_in_loss_scale_optimizer_matches_plain():
    results = []
    for wrap in (False, True):
        variables = _variables()[:2]
        opt = LARS(LR, weight_decay=WD)
        if wrap:
            opt = keras.optimizers.LossScaleOptimizer(opt, initial_scale=1024.0)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(variables[0])) + tf.reduce_sum(variables[1])
            scaled = opt.scale_loss(loss) if wrap else loss
        grads = tape.gradient(scaled, variables)
        opt.apply_gradients(zip(grads, variables, strict=True))
        results.append([v.numpy() for v in variables])
    for plain, wrapped in zip(*results, strict=True):
        np.testing.assert_allclose(wrapped, plain, rtol=1e-6)
    assert not np.allclose(results[0][0], _variables()[0].numpy())  # it did move


def test_config_round_trip_with_schedule():
    opt = LARS(WarmupCosine(1.2, 100, 10), weight_decay=1e-4, exclude_from_weight_decay=("bias",))
    clone = LARS.from_config(opt.get_config())
    assert clone.lars_weight_decay == 1e-4 and clone.exclude_from_weight_decay_patterns == ("bias",)
    assert clone.exclude_from_layer_adaptation_patterns == ("bias",)
    assert isinstance(clone._learning_rate, WarmupCosine)
    assert float(clone._learning_rate(55)) == pytest.approx(0.6)


def test_warmup_cosine_values():
    schedule = WarmupCosine(base_lr=2.0, total_steps=110, warmup_steps=10)
    values = {s: float(schedule(s)) for s in (0, 5, 10, 60, 110, 200)}
    assert values[0] == 0.0
    assert values[5] == pytest.approx(1.0)  # linear warmup
    assert values[10] == pytest.approx(2.0)  # end of warmup: the full rate
    assert values[60] == pytest.approx(1.0)  # half-way through the cosine
    assert values[110] == pytest.approx(0.0, abs=1e-6)  # end
    assert values[200] == pytest.approx(0.0, abs=1e-6)
    assert float(schedule(85)) == pytest.approx(1.0 + math.cos(math.pi * 0.75))
    assert WarmupCosine.from_config(schedule.get_config()).get_config() == schedule.get_config()
    assert float(WarmupCosine(1.0, 10, 0)(0)) == pytest.approx(1.0)  # no warmup
    with pytest.raises(ValueError):
        WarmupCosine(1.0, 10, 20)


def test_scaled_learning_rate():
    assert scaled_learning_rate(0.3, 512, "linear") == pytest.approx(0.6)
    assert scaled_learning_rate(0.075, 256, "sqrt") == pytest.approx(1.2)  # 0.075*sqrt(B)
    assert scaled_learning_rate(0.3, 256) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="scaling"):
        scaled_learning_rate(0.3, 256, "cubic")
