"""Representation quality without labels: alignment, uniformity, effective rank, view retrieval.

- Alignment (Wang & Isola 2020, "Understanding Contrastive Representation Learning
  through Alignment and Uniformity on the Hypersphere", eq. 4; their reference code
  ``align_loss``): ``E ||f(x) - f(y)||^alpha`` over positive pairs (two augmented views of
  one image) of L2-normalised embeddings, alpha = 2. 0 = views map to one point; 4 =
  antipodal. Lower is better, but a collapsed encoder scores 0 too: read it beside
  uniformity.
- Uniformity (ibid., eq. 5, ``uniform_loss``): ``log E exp(-t ||f(x) - f(y)||^2)`` over
  distinct pairs of images, t = 2; the mean over both views' sets (as their training
  code). 0 = everything collapsed to one point; lower = more uniform on the sphere; for
  uniform points on S^{d-1} it tends to ``-2t + log(Gamma(d/2) t^(1-d/2) I_{d/2-1}(2t))``.
- Effective rank (Roy & Vetterli 2007, "The effective rank: a measure of effective
  dimensionality", def. 1): ``exp(H(p))`` with ``p_k = sigma_k / sum(sigma)`` the
  normalised singular values of the (uncentred) feature matrix, as RankMe (Garrido et al.
  2023) applies it to embeddings. 1 = collapse to one direction; at most min(N, D).
- View retrieval: the share of the 2N views whose nearest neighbour (cosine) among the
  other 2N - 1 views is the other view of the same image; chance is 1 / (2N - 1).

All take numpy arrays; ``label_free_quality`` runs an encoder on two augmented views.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import gammaln, ive

from simclr.augment import AugmentPolicy
from simclr.augment.ops import augment_pair
from simclr.errors import UserError
from simclr.evaluate import extract_features

ALIGNMENT_ALPHA = 2.0
UNIFORMITY_T = 2.0
MAX_UNIFORMITY_POINTS = 4096  # pairs grow as N^2; a seeded subsample beyond this


def _unit(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def alignment(z_a: np.ndarray, z_b: np.ndarray, alpha: float = ALIGNMENT_ALPHA) -> float:
    """Mean ||a_i - b_i||^alpha of the L2-normalised rows (positive pairs)."""
    if len(z_a) != len(z_b) or len(z_a) == 0:
        raise UserError(f"alignment needs two equal, non-empty sets ({len(z_a)}, {len(z_b)})")
    gap = np.linalg.norm(_unit(z_a) - _unit(z_b), axis=1)
    return float(np.mean(gap**alpha))


def uniformity(
    z: np.ndarray, t: float = UNIFORMITY_T, *, max_points: int = MAX_UNIFORMITY_POINTS, seed=0
) -> float:
    """log of the mean of exp(-t ||z_i - z_j||^2) over pairs i < j (rows L2-normalised)."""
    z = _unit(z)
    if len(z) < 2:
        raise UserError(f"uniformity needs at least 2 embeddings, got {len(z)}")
    if len(z) > max_points:
        keep = np.random.default_rng(seed).choice(len(z), max_points, replace=False)
        z = z[np.sort(keep)]
    n = len(z)
    upper = np.triu_indices(n, k=1)
    squared = np.maximum(2.0 - 2.0 * (z @ z.T)[upper], 0.0)
    exponents = -t * squared
    peak = exponents.max()  # log-mean-exp, stable for large t
    return float(peak + math.log(np.mean(np.exp(exponents - peak))))


def uniformity_on_sphere(dim: int, t: float = UNIFORMITY_T) -> float:
    """The uniformity of the uniform distribution on S^{dim-1} (its large-N limit).

    E exp(-t||x-y||^2) = exp(-2t) E exp(2t cos), and cos has density proportional to
    (1-u^2)^((d-3)/2), whose moment generating function is
    Gamma(d/2) (k/2)^(1-d/2) I_{d/2-1}(k) at k = 2t.
    """
    nu = dim / 2 - 1
    # ive(nu, x) = iv(nu, x) * exp(-x): the exp(-2t) cancels the Bessel function's growth
    log_mgf_times_exp = gammaln(dim / 2) + (1 - dim / 2) * math.log(t) + math.log(ive(nu, 2 * t))
    return float(log_mgf_times_exp)


def effective_rank(features: np.ndarray) -> float:
    """exp(entropy of the normalised singular values) of ``features`` [N, D]."""
    sigma = np.linalg.svd(np.asarray(features, np.float64), compute_uv=False)
    total = sigma.sum()
    if not total > 0:
        return 0.0
    p = sigma[sigma > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def view_retrieval_top1(z_a: np.ndarray, z_b: np.ndarray, chunk_size: int = 1024) -> float:
    """Share of the 2N views whose nearest other view is their own image's other view."""
    n = len(z_a)
    if n != len(z_b) or n < 2:
        raise UserError(f"view retrieval needs two equal sets of >= 2 views ({n}, {len(z_b)})")
    views = _unit(np.concatenate([z_a, z_b])).astype(np.float32)
    partner = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
    hits = 0
    for start in range(0, 2 * n, chunk_size):
        sims = views[start : start + chunk_size] @ views.T
        rows = np.arange(len(sims))
        sims[rows, start + rows] = -np.inf  # not itself
        hits += int(np.sum(np.argmax(sims, axis=1) == partner[start : start + chunk_size]))
    return hits / (2 * n)


def quality_from_views(
    features_a: np.ndarray, features_b: np.ndarray, features: np.ndarray | None = None
) -> dict[str, float]:
    """All four figures from the features of two views (and of the clean images, for
    the effective rank; view a's when not given)."""
    ranked = features_a if features is None else features
    both = 0.5 * (uniformity(features_a) + uniformity(features_b))
    return {
        "alignment": alignment(features_a, features_b),
        "uniformity": both,
        "effective_rank": effective_rank(ranked),
        "view_retrieval_top1": view_retrieval_top1(features_a, features_b),
    }


def augmented_views(images: np.ndarray, policy=None, seed: int = 0, batch_size: int = 512):
    """Two augmented views of each image as uint8 [N, H, W, 3] (SimCLR augmentation)."""
    policy = policy or AugmentPolicy()
    views_a, views_b = [], []
    for index, start in enumerate(range(0, len(images), batch_size)):
        a, b = augment_pair(images[start : start + batch_size], policy, seed * 100_003 + index)
        views_a.append(_to_uint8(a.numpy()))
        views_b.append(_to_uint8(b.numpy()))
    return np.concatenate(views_a), np.concatenate(views_b)


def _to_uint8(views: np.ndarray) -> np.ndarray:
    return np.clip(np.round(views * 255.0), 0, 255).astype(np.uint8)


def label_free_quality(
    model,
    images: np.ndarray,
    *,
    policy=None,
    seed: int = 0,
    batch_size: int = 256,
    features: np.ndarray | None = None,
    max_images: int | None = 2000,
) -> dict[str, Any]:
    """The label-free figures of a uint8-in encoder (what ``simclr.evaluate`` takes).

    ``images`` uint8 [N, H, W, 3] (e.g. the test split, labelled or not; a seeded
    ``max_images`` subsample); ``features`` their clean features when the caller has
    them (evaluate's kNN pass), else computed. Returns the four figures plus
    ``num_images`` and ``feature_dim``; UserError if the encoder gives non-finite output.
    """
    if max_images is not None and len(images) > max_images:
        keep = np.sort(np.random.default_rng(seed).choice(len(images), max_images, replace=False))
        images = images[keep]
        features = features[keep] if features is not None else None
    if len(images) < 2:
        raise UserError(f"label-free quality needs at least 2 images, got {len(images)}")
    view_a, view_b = augmented_views(images, policy, seed)
    features_a = extract_features(model, view_a, batch_size)
    features_b = extract_features(model, view_b, batch_size)
    if features is None:
        features = extract_features(model, images, batch_size)
    for name, array in (("views", features_a), ("views", features_b), ("images", features)):
        if not np.isfinite(array).all():
            raise UserError(f"the encoder gave non-finite features for the {name}")
    return {
        **quality_from_views(features_a, features_b, features),
        "num_images": int(len(images)),
        "feature_dim": int(features.shape[1]),
    }
