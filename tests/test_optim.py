"""LARS against hand computations, exclusions, loss scaling (also across replicas);
WarmupCosine; the schedule and learning rate that training uses."""

import json
import math
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from simclr.optim import LARS, WarmupCosine

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


def _loss_scale_run(optimizer: str) -> dict:
    helper = Path(__file__).with_name("_loss_scale_check.py")
    proc = subprocess.run(
        [sys.executable, str(helper), optimizer], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_loss_scale_skips_on_every_replica_when_one_overflows():
    """MirroredStrategy, 2 replicas, replica 1's gradients inf in the first step."""
    ours = _loss_scale_run("global")
    for before, after in zip(ours["initial"], ours["after_overflow"], strict=True):
        np.testing.assert_array_equal(after, before)  # the step was skipped everywhere
    assert ours["scale_after_overflow"] == ours["initial_scale"] / 2  # halved once
    clean = [np.asarray(w) for w in ours["after_clean"]]
    assert all(np.isfinite(w).all() for w in clean)
    assert not np.allclose(clean[0], ours["initial"][0])  # the next step proceeds
    assert ours["scale_after_clean"] == ours["initial_scale"] / 2
    # The same scenario with Keras's own optimizer writes non-finite weights (its
    # decision is replica 0's): the case above is the one that matters.
    keras_run = _loss_scale_run("keras")
    assert not all(np.isfinite(w).all() for w in map(np.asarray, keras_run["after_overflow"]))


@pytest.mark.parametrize(
    ("scaling", "expected"),
    [("linear", 0.3 * 512 / 256), ("sqrt", 0.3 * math.sqrt(512)), ("none", 0.3)],
)
def test_training_takes_steps_at_the_scaled_learning_rate(scaling, expected):
    """The optimizer training builds, after warmup, moves an unadapted variable by lr*g."""
    from simclr.train_config import PretrainConfig, make_plan
    from simclr.train_state import build_state

    config = PretrainConfig(
        data_dir="-", output_dir="-", encoder="resnet18", width_multiplier=0.125,
        batch_size=512, learning_rate=0.3, lr_scaling=scaling, epochs=10, warmup_epochs=1,
    )  # fmt: skip
    plan = make_plan(config, {"splits": {"train": {"num_examples": 5000}}})
    state = build_state(tf.distribute.get_strategy(), config, plan, "float32")
    variables = state.encoder.trainable_variables + state.head.trainable_variables
    beta = next(v for v in variables if v.path.endswith("stem_bn/beta"))
    assert not state.optimizer.uses_layer_adaptation(beta)
    state.optimizer.iterations.assign(plan.warmup_steps)  # the top of the schedule
    before = beta.numpy()
    grads = [tf.ones_like(v) if v is beta else tf.zeros_like(v) for v in variables]
    state.optimizer.apply_gradients(zip(grads, variables, strict=True))
    np.testing.assert_allclose(before - beta.numpy(), expected, rtol=1e-5)


def test_float16_training_uses_the_replica_global_loss_scale():
    from simclr.optim import GlobalLossScaleOptimizer
    from simclr.train_config import PretrainConfig, make_plan
    from simclr.train_state import build_state

    config = PretrainConfig(
        data_dir="-", output_dir="-", encoder="resnet18", width_multiplier=0.125
    )
    plan = make_plan(config, {"splits": {"train": {"num_examples": 5000}}})
    state = build_state(tf.distribute.get_strategy(), config, plan, "float16")
    assert isinstance(state.optimizer, GlobalLossScaleOptimizer)
    assert isinstance(state.optimizer.inner_optimizer, LARS)


def test_schedule_length_matches_the_official_count():
    from simclr.train_config import PretrainConfig, make_plan

    cifar = {"splits": {"train": {"num_examples": 50000}}}
    plan = make_plan(PretrainConfig(data_dir="-", output_dir="-"), cifar)
    # google-research/simclr: ceil(50000 * 1000 / 1024) steps, warmup over ceil(50000 * 10 / 1024).
    assert (plan.total_steps, plan.warmup_steps) == (48829, 489)
    assert plan.epochs_completed(48828) == 999 and plan.epochs_completed(48829) == 1000
    short = make_plan(PretrainConfig(data_dir="-", output_dir="-", epochs=2, batch_size=300), cifar)
    assert (short.total_steps, short.warmup_steps) == (334, 334)  # warmup clamped to the run


def test_training_step_minimises_twice_the_papers_loss():
    """The official objective loss_a + loss_b = 2 x nt_xent_loss: an unadapted, undecayed
    variable (BatchNorm beta) moves by lr x the gradient of twice the paper's mean."""
    from simclr.augment import AugmentPolicy
    from simclr.losses import OBJECTIVE_SCALE, nt_xent_loss
    from simclr.train_config import PretrainConfig, make_plan
    from simclr.train_state import build_state
    from simclr.train_step import make_train_step

    assert OBJECTIVE_SCALE == 2.0
    config = PretrainConfig(
        data_dir="-", output_dir="-", encoder="resnet18", width_multiplier=0.125,
        batch_size=16, learning_rate=0.5, lr_scaling="none", warmup_epochs=0, epochs=1,
    )  # fmt: skip
    plan = make_plan(config, {"splits": {"train": {"num_examples": 64}}})
    strategy = tf.distribute.get_strategy()
    state = build_state(strategy, config, plan, "float32")
    # Views equal to the images: the gradient below sees exactly what the step sees.
    identity = AugmentPolicy(
        crop_area_min=1.0, crop_area_max=1.0, crop_aspect_min=1.0, crop_aspect_max=1.0,
        flip_prob=0.0, color_jitter_prob=0.0, grayscale_prob=0.0,
    )  # fmt: skip
    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    views = tf.constant(images, tf.float32) / 255.0
    variables = state.encoder.trainable_variables + state.head.trainable_variables
    beta = next(v for v in variables if v.path.endswith("stem_bn/beta"))
    with tf.GradientTape() as tape:
        z = state.head(state.encoder(tf.concat([views, views], 0), training=True), training=True)
        paper_loss = nt_xent_loss(*tf.split(z, 2), config.temperature)
    paper_grad = tape.gradient(paper_loss, beta).numpy()
    before = beta.numpy()
    step = make_train_step(strategy, state, config, identity, jit=False)
    dataset = tf.data.Dataset.from_tensors(images).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    step(iterator, tf.constant(0, tf.int64), tf.constant(0.0))
    moved = before - beta.numpy()
    np.testing.assert_allclose(moved, 0.5 * 2.0 * paper_grad, rtol=1e-3, atol=1e-7)
