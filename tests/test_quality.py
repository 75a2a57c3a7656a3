"""Label-free quality figures (simclr.quality) against hand-computable cases and the
closed forms of the papers: Wang & Isola 2020 (alignment, uniformity; their reference
``align_loss`` / ``uniform_loss`` in github.com/SsnL/align_uniform), Roy & Vetterli 2007
(effective rank, definition 1 and its properties)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from simclr import quality as q


def _sphere(n: int, dim: int, seed: int = 0) -> np.ndarray:
    z = np.random.default_rng(seed).normal(size=(n, dim))
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def test_alignment_of_known_pairs():
    z = _sphere(50, 8)
    assert q.alignment(z, z) == pytest.approx(0.0, abs=1e-12)
    assert q.alignment(z, -z) == pytest.approx(4.0)  # antipodal: ||2z||^2
    assert q.alignment(z, 3.0 * z) == pytest.approx(0.0, abs=1e-12)  # normalised first
    # independent uniform points: E||x - y||^2 = 2 - 2 E[x.y] = 2
    assert q.alignment(_sphere(20000, 8, 1), _sphere(20000, 8, 2)) == pytest.approx(2.0, abs=0.03)
    # orthogonal pairs: ||x - y||^2 = 2, with alpha = 1 -> sqrt 2
    e = np.eye(4)
    assert q.alignment(e, np.roll(e, 1, axis=1), alpha=1.0) == pytest.approx(math.sqrt(2))


def test_uniformity_of_known_points():
    collapsed = np.tile([[0.6, 0.8]], (10, 1))
    assert q.uniformity(collapsed) == pytest.approx(0.0, abs=1e-12)
    antipodal = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert q.uniformity(antipodal) == pytest.approx(-2.0 * 4.0)  # log exp(-t * 4)
    # regular simplex of d+1 points in R^d: every squared distance is 2 (1 + 1/d)
    d = 5
    simplex = np.eye(d + 1) - 1.0 / (d + 1)
    assert q.uniformity(simplex, t=1.5) == pytest.approx(-1.5 * 2 * (1 + 1 / d))
    # mean over pairs, not a sum: three points at 0, 90 and 180 degrees
    three = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    want = math.log((2 * math.exp(-2 * 2.0) + math.exp(-2 * 4.0)) / 3)
    assert q.uniformity(three) == pytest.approx(want)


def test_uniformity_closed_form_on_the_sphere():
    # S^2: cos is uniform on [-1, 1] (Archimedes), E exp(-t|x-y|^2) = e^{-2t} sinh(2t)/(2t)
    t = 2.0
    s2 = -2 * t + math.log(math.sinh(2 * t) / (2 * t))
    assert q.uniformity_on_sphere(3, t) == pytest.approx(s2, rel=1e-9)
    # S^1: e^{-2t} I_0(2t)
    from scipy.special import i0

    assert q.uniformity_on_sphere(2, t) == pytest.approx(-2 * t + math.log(i0(2 * t)))
    for dim in (3, 16):
        sampled = q.uniformity(_sphere(3000, dim, dim))
        assert sampled == pytest.approx(q.uniformity_on_sphere(dim), abs=0.02)
    # the subsample beyond max_points estimates the same thing
    assert q.uniformity(_sphere(5000, 16, 7), max_points=1500) == pytest.approx(
        q.uniformity_on_sphere(16), abs=0.03
    )


def test_effective_rank():
    rng = np.random.default_rng(0)
    collapsed = np.tile(rng.normal(size=(1, 32)), (100, 1))
    assert q.effective_rank(collapsed) == pytest.approx(1.0, abs=1e-6)
    assert q.effective_rank(np.eye(7)) == pytest.approx(7.0)
    # singular values (3, 1): p = (3/4, 1/4), exp(H) = 4 / 3^(3/4)
    diag = np.diag([3.0, 1.0])
    assert q.effective_rank(diag) == pytest.approx(4 / 3**0.75)
    # Roy & Vetterli: invariant to scaling and to orthogonal transforms; 1 <= erank <= rank
    x = rng.normal(size=(200, 16)) * np.linspace(0.1, 3, 16)
    rotation = np.linalg.qr(rng.normal(size=(16, 16)))[0]
    assert q.effective_rank(5 * x) == pytest.approx(q.effective_rank(x))
    assert q.effective_rank(x @ rotation) == pytest.approx(q.effective_rank(x))
    assert 1.0 < q.effective_rank(x) < 16.0
    assert q.effective_rank(np.zeros((5, 3))) == 0.0


def test_view_retrieval():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 16))
    assert q.view_retrieval_top1(a, a + 0.01 * rng.normal(size=a.shape)) == 1.0
    chance = q.view_retrieval_top1(a, rng.normal(size=a.shape))
    assert chance < 0.05
    # half the pairs matched: ~half of the views find their partner
    b = rng.normal(size=a.shape)
    b[:150] = a[:150] + 0.01 * rng.normal(size=(150, 16))
    assert q.view_retrieval_top1(a, b, chunk_size=64) == pytest.approx(0.5, abs=0.05)


def test_pretrained_encoder_beats_random_init_in_the_papers_direction(
    pretrained_run, real_prepared_data
):
    """The trained run (tests/fixtures_train.py, 79 SimCLR steps) against the same
    architecture at random init, on 1,000 real test images: views of one image closer
    (lower alignment), embeddings spread (lower uniformity) and a view's nearest
    neighbour more often its own other view."""
    import keras
    from simclr import data
    from simclr.model import build_encoder, load_encoder, make_image_encoder

    model, config = load_encoder(pretrained_run)
    images, _ = data.load_arrays(real_prepared_data, "test", 1000, sample_seed=0)
    keras.utils.set_random_seed(0)
    random_init = make_image_encoder(build_encoder(config["encoder"], config["width_multiplier"]))
    trained = q.label_free_quality(model, images, seed=1)
    baseline = q.label_free_quality(random_init, images, seed=1)
    print({"pretrained": trained, "random_init": baseline})
    assert trained["num_images"] == 1000 and trained["feature_dim"] == 64
    assert trained["uniformity"] < baseline["uniformity"]
    assert trained["view_retrieval_top1"] > baseline["view_retrieval_top1"]
    assert trained["effective_rank"] > baseline["effective_rank"]  # random init: near collapse
    assert trained["view_retrieval_top1"] > 10 / 1999  # far above chance
    for figures in (trained, baseline):
        assert 0 <= figures["alignment"] <= 4 and figures["uniformity"] <= 0
        assert 1 <= figures["effective_rank"] <= 64
