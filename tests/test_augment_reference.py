"""Hue jitter measured in the output, against TensorFlow and the published ranges.

The reference is google-research/simclr (tf2/data_util.py `color_jitter(image, strength)`:
brightness, contrast and saturation 0.8 * strength, hue 0.2 * strength, applied with
`tf.image.random_hue(image, max_delta=hue)`, i.e. `tf.image.adjust_hue` by a delta
uniform in [-hue, hue]), not our own `_jitter_amounts`: the hue turn of each view is
read back from the pixels with `tf.image.rgb_to_hsv`.

Why flat images: for an image of one colour, contrast (per-channel means) is the
identity, v2's multiplicative brightness and the HSV saturation change keep the hue, and
with the colour's maximum at 0.5 nothing clips (factors are at most 1 + 0.8 * strength);
so the only hue change of a view is the hue jitter's, in any order of the four ops.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from simclr import data
from simclr.augment import AugmentPolicy, augment_batch

from tests.fixtures_colour import one_colour_op

FLAT_COLOUR = (0.5, 0.3, 0.1)  # hue 0.0667 (of a turn), saturation 0.8, value 0.5
VIEWS = 2000


def _hue_of(images: np.ndarray) -> np.ndarray:
    return tf.image.rgb_to_hsv(tf.convert_to_tensor(images, tf.float32)).numpy()[..., 0]


def _turn(after: np.ndarray, before: float) -> np.ndarray:
    """Signed hue change in turns, in [-0.5, 0.5)."""
    return (after - before + 0.5) % 1.0 - 0.5


def _flat_images(n: int) -> np.ndarray:
    colour = np.round(np.array(FLAT_COLOUR) * 255).astype(np.uint8)
    return np.broadcast_to(colour, (n, 32, 32, 3)).copy()


def _view_turns(policy: AugmentPolicy, seed: int) -> np.ndarray:
    """Each view's hue change (turns), measured at its centre pixel; checks the view
    is flat (one hue per view)."""
    images = _flat_images(VIEWS)
    views = augment_batch(tf.constant(images), policy, seed).numpy()
    before = float(_hue_of(images[:1, :1, :1] / 255.0).ravel()[0])
    hues = _hue_of(views)
    turns = _turn(hues[:, 16, 16], before)
    spread = np.abs(_turn(hues, hues[:, 16:17, 16:17])).max()
    assert spread < 1e-3, spread  # no other op changed the hue of some pixels only
    return turns


def _jitter_only(strength: float) -> AugmentPolicy:
    return AugmentPolicy(
        color_jitter_strength=strength,
        color_jitter_prob=1.0,
        color_jitter_version="v2",  # multiplicative brightness: no clipping on a flat image
        grayscale_prob=0.0,
        flip_prob=0.0,
    )


@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_views_turn_the_hue_uniformly_over_the_published_range(strength):
    published = 0.2 * strength  # data_util.py: hue = 0.2 * strength
    turns = _view_turns(_jitter_only(strength), seed=11)
    assert np.abs(turns).max() <= published + 2e-3, np.abs(turns).max()
    # Uniform on [-0.2s, 0.2s]: both ends reached, the middle not favoured.
    assert turns.min() < -0.95 * published and turns.max() > 0.95 * published
    assert np.std(turns) == pytest.approx(published / np.sqrt(3), rel=0.06)
    assert abs(np.mean(turns)) < 0.05 * published
    assert np.mean(np.abs(turns) < 0.01 * published) < 0.05  # hue is not left alone


def test_views_turn_the_hue_as_tf_image_random_hue_does():
    """The distribution of turns against tf.image.random_hue(max_delta=0.2 * 0.5)'s on
    the same flat colour (two-sample Kolmogorov-Smirnov distance)."""
    policy = _jitter_only(0.5)
    ours = np.sort(_view_turns(policy, seed=5))
    image = tf.constant(np.array(FLAT_COLOUR, np.float32).reshape(1, 1, 3))
    tf.random.set_seed(0)
    before = float(_hue_of(image.numpy()).ravel()[0])
    theirs = np.sort(
        [
            _turn(float(_hue_of(tf.image.random_hue(image, policy.hue).numpy()).ravel()[0]), before)
            for _ in range(VIEWS)
        ]
    )
    grid = np.linspace(-0.1, 0.1, 201)
    distance = np.max(np.abs(np.searchsorted(ours, grid) - np.searchsorted(theirs, grid)) / VIEWS)
    assert distance < 0.06, distance  # ~1.4x the 5% critical value for n = m = 2000


@pytest.mark.parametrize("delta", [-0.1, -0.03, 0.05, 0.2, 0.45])
def test_hue_op_equals_tf_image_adjust_hue_on_real_cifar(real_prepared_data, delta):
    images, _ = data.load_arrays(real_prepared_data, "test")
    x = tf.constant(images[:64], tf.float32) / 255.0
    ours = one_colour_op(x, "hue", tf.fill([64], delta)).numpy()
    reference = np.stack([tf.image.adjust_hue(image, delta).numpy() for image in x])
    np.testing.assert_allclose(ours, reference, atol=2e-5)
    assert np.abs(ours - x.numpy()).mean() > 0.005  # a real turn, not the identity
