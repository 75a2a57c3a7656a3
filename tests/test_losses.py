"""NT-Xent loss: NumPy reference, analytic limit, stability, MirroredStrategy."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from simclr.losses import nt_xent_loss, nt_xent_loss_and_accuracy

REPO = Path(__file__).resolve().parent.parent


def numpy_nt_xent(z_a: np.ndarray, z_b: np.ndarray, t: float) -> tuple[float, float]:
    """Textbook NT-Xent (SimCLR eq. 1) over the 2N x 2N similarity matrix, float64."""
    z = np.concatenate([z_a, z_b]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z_a)
    sim = z @ z.T / t
    positive = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
    losses, hits = [], []
    for i in range(2 * n):
        others = [k for k in range(2 * n) if k != i]
        logits = sim[i, others]
        losses.append(-sim[i, positive[i]] + np.log(np.sum(np.exp(logits))))
        hits.append(others[int(np.argmax(logits))] == positive[i])
    return float(np.mean(losses)), float(np.mean(hits))


@pytest.mark.parametrize("n,d,t", [(2, 3, 0.5), (7, 16, 0.1), (16, 8, 1.0)])
def test_matches_numpy_reference(n, d, t):
    rng = np.random.default_rng(n)
    z_a = rng.normal(size=(n, d)).astype(np.float32)
    z_b = (z_a + rng.normal(size=(n, d))).astype(np.float32)
    loss, accuracy = nt_xent_loss_and_accuracy(z_a, z_b, t)
    want_loss, want_accuracy = numpy_nt_xent(z_a, z_b, t)
    assert loss.dtype == tf.float32 and loss.shape == ()
    np.testing.assert_allclose(float(loss), want_loss, rtol=1e-5, atol=1e-5)
    assert float(accuracy) == pytest.approx(want_accuracy)
    np.testing.assert_allclose(float(nt_xent_loss(z_a, z_b, t)), want_loss, rtol=1e-5)


def test_default_temperature_is_half():
    rng = np.random.default_rng(1)
    z_a, z_b = rng.normal(size=(2, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(
        float(nt_xent_loss(z_a, z_b)), numpy_nt_xent(z_a, z_b, 0.5)[0], rtol=1e-5
    )


@pytest.mark.parametrize("t", [0.5, 0.05])
def test_identical_views_orthogonal_others_give_analytic_value(t):
    n = 6
    scales = np.arange(1, n + 1, dtype=np.float32)[:, None]  # normalisation must undo these
    z = np.eye(n, 10, dtype=np.float32) * scales
    loss, accuracy = nt_xent_loss_and_accuracy(z, z * 3.0, t)
    want = -np.log(np.exp(1 / t) / (np.exp(1 / t) + (2 * n - 2) * np.exp(0.0)))
    # float32 logits near 1/t = 20 carry ~2e-6 absolute rounding, hence the atol.
    np.testing.assert_allclose(float(loss), want, rtol=1e-5, atol=2e-6)
    assert float(accuracy) == 1.0


def test_low_temperature_and_half_precision_are_stable():
    rng = np.random.default_rng(2)
    z_a = rng.normal(size=(32, 16)).astype(np.float32)
    z_b = (z_a + 0.5 * rng.normal(size=(32, 16))).astype(np.float32)
    want, _ = numpy_nt_xent(z_a, z_b, 0.05)
    np.testing.assert_allclose(float(nt_xent_loss(z_a, z_b, 0.05)), want, rtol=1e-5)
    for dtype, rtol in [(tf.float16, 2e-3), (tf.bfloat16, 2e-2)]:
        a, b = tf.Variable(tf.cast(z_a, dtype)), tf.Variable(tf.cast(z_b, dtype))
        with tf.GradientTape() as tape:
            loss = nt_xent_loss(a, b, 0.05)
        grads = tape.gradient(loss, [a, b])
        assert loss.dtype == tf.float32
        assert np.isfinite(float(loss))
        assert all(np.all(np.isfinite(g.numpy().astype(np.float32))) for g in grads)
        # Computed in float32: same as the float32 loss of the same (rounded) values.
        rounded = [tf.cast(v, tf.float32) for v in (a, b)]
        np.testing.assert_allclose(float(loss), float(nt_xent_loss(*rounded, 0.05)), rtol=1e-6)
        np.testing.assert_allclose(float(loss), want, rtol=rtol)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    z_a, z_b = rng.normal(size=(2, 4, 3))
    a = tf.Variable(z_a.astype(np.float32))
    with tf.GradientTape() as tape:
        loss = nt_xent_loss(a, z_b.astype(np.float32), 0.3)
    grad = tape.gradient(loss, a).numpy()
    eps, numeric = 1e-5, np.zeros_like(z_a)
    for idx in np.ndindex(z_a.shape):
        plus, minus = z_a.copy(), z_a.copy()
        plus[idx] += eps
        minus[idx] -= eps
        numeric[idx] = (numpy_nt_xent(plus, z_b, 0.3)[0] - numpy_nt_xent(minus, z_b, 0.3)[0]) / (
            2 * eps
        )
    np.testing.assert_allclose(grad, numeric, atol=1e-4)


def test_works_compiled_with_xla():
    rng = np.random.default_rng(4)
    z_a, z_b = rng.normal(size=(2, 8, 4)).astype(np.float32)
    compiled = tf.function(lambda a, b: nt_xent_loss_and_accuracy(a, b, 0.2), jit_compile=True)
    loss, _ = compiled(z_a, z_b)
    np.testing.assert_allclose(float(loss), numpy_nt_xent(z_a, z_b, 0.2)[0], rtol=1e-5)


def test_rejects_non_positive_temperature():
    z = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent_loss(z, z, 0.0)


def test_mirrored_strategy_matches_single_device():
    """2 logical CPUs, global batch 8: loss, accuracy, gradients and a LARS step agree."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "components"), str(REPO)]),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "_mirrored_loss_check.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    single, mirrored = result["single"], result["mirrored"]

    assert mirrored["loss"] == pytest.approx(single["loss"], rel=1e-5)
    assert mirrored["accuracy"] == pytest.approx(single["accuracy"])
    assert 0.0 < single["accuracy"] < 1.0  # the accuracy comparison means something
    for key in ("weight_grads", "z_grads", "weights_after"):
        for got, want in zip(mirrored[key], single[key], strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=key)
    # The replicas really used each other's negatives.
    assert not np.allclose(mirrored["per_replica_loss"], mirrored["local_only_loss"], rtol=1e-3)
