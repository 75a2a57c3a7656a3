"""simclr.augment (policy, batched and per-image augmentation) and the augment task."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from simclr import augment as aug
from simclr.augment import AugmentPolicy
from simclr.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IDENTITY = AugmentPolicy(
    crop_area_min=1.0,
    crop_area_max=1.0,
    crop_aspect_min=1.0,
    crop_aspect_max=1.0,
    flip_prob=0.0,
    color_jitter_prob=0.0,
    grayscale_prob=0.0,
    blur=True,
    blur_prob=0.0,
)


def _images(count: int, seed: int = 0) -> np.ndarray:
    """Smooth-ish colourful images (random colours per 8x8 block, upsampled)."""
    blocks = np.random.default_rng(seed).integers(0, 256, (count, 4, 4, 3), dtype=np.uint8)
    return blocks.repeat(8, axis=1).repeat(8, axis=2)


def _per_image(images: np.ndarray, policy: AugmentPolicy, seed: int = 0) -> np.ndarray:
    import tensorflow as tf

    ds = (
        tf.data.Dataset.from_tensor_slices(images)
        .enumerate()
        .map(lambda i, x: aug.augment_image(x, policy, tf.stack([tf.constant(seed, tf.int64), i])))
    )
    return np.stack([v.numpy() for v in ds.batch(len(images))])[0]


# ------------------------------------------------------------------------------ policy


def test_policy_defaults_are_simclr_cifar10():
    p = AugmentPolicy()
    assert (p.crop_area_min, p.crop_area_max) == (0.08, 1.0)
    assert (p.crop_aspect_min, p.crop_aspect_max) == pytest.approx((3 / 4, 4 / 3))
    assert (p.flip_prob, p.color_jitter_prob, p.grayscale_prob) == (0.5, 0.8, 0.2)
    assert (p.brightness, p.contrast, p.saturation, p.hue) == pytest.approx((0.4, 0.4, 0.4, 0.1))
    assert (
        p.blur is False
        and p.blur_prob == 0.5
        and (p.blur_sigma_min, p.blur_sigma_max) == (0.1, 2.0)
    )


def test_policy_json_round_trip(tmp_path):
    policy = AugmentPolicy(flip_prob=0.25, blur=True, color_jitter_strength=1.0)
    assert AugmentPolicy.from_json(policy.to_json()) == policy
    assert AugmentPolicy.from_dict({"grayscale_prob": 0.0}) == AugmentPolicy(grayscale_prob=0.0)
    path = str(tmp_path / "sub" / "policy.json")
    aug.save_policy(policy, path)
    assert aug.load_policy(path) == policy
    assert json.loads(open(path).read())["flip_prob"] == 0.25


@pytest.mark.parametrize(
    "field, value",
    [
        ("flip_prob", 1.5),
        ("color_jitter_prob", -0.1),
        ("grayscale_prob", float("nan")),
        ("blur_prob", 2),
        ("crop_area_min", 0.0),
        ("crop_area_max", 1.2),
        ("crop_aspect_min", -1.0),
        ("color_jitter_strength", -0.5),
        ("blur_sigma_min", 0.0),
        ("blur", "yes"),
        ("flip_prob", "0.5"),
        ("blur_kernel_fraction", 0.0),
    ],
)
def test_policy_validation_names_the_field(field, value):
    with pytest.raises(UserError, match=field):
        AugmentPolicy.from_dict({field: value})


def test_policy_validation_of_ranges_and_files(tmp_path):
    with pytest.raises(UserError, match="crop_area_min"):
        AugmentPolicy(crop_area_min=0.6, crop_area_max=0.5).validate()
    with pytest.raises(UserError, match="crop_aspect_min"):
        AugmentPolicy(crop_aspect_min=2.0, crop_aspect_max=1.0).validate()
    with pytest.raises(UserError, match="blur_sigma_min"):
        AugmentPolicy(blur_sigma_min=3.0, blur_sigma_max=2.0).validate()
    with pytest.raises(UserError, match="colour_strength"):
        AugmentPolicy.from_dict({"colour_strength": 1.0})
    with pytest.raises(UserError, match="not valid JSON"):
        AugmentPolicy.from_json("{nope")
    with pytest.raises(UserError, match="not found"):
        aug.load_policy(str(tmp_path / "missing.json"))


# ----------------------------------------------------------------------------- batched


def test_pair_shape_dtype_range_and_determinism():
    import tensorflow as tf

    images = _images(32)
    a, b = aug.augment_pair(images, AugmentPolicy(blur=True), 7)
    for view in (a, b):
        assert view.shape == (32, 32, 32, 3) and view.dtype == tf.float32
        assert float(tf.reduce_min(view)) >= 0.0 and float(tf.reduce_max(view)) <= 1.0
    a2, b2 = aug.augment_pair(images, AugmentPolicy(blur=True), tf.constant(7, tf.int32))
    np.testing.assert_array_equal(a.numpy(), a2.numpy())
    np.testing.assert_array_equal(b.numpy(), b2.numpy())
    assert np.abs(a.numpy() - b.numpy()).mean() > 0.02  # the two views differ
    c, _ = aug.augment_pair(images, AugmentPolicy(blur=True), 8)
    assert np.abs(a.numpy() - c.numpy()).mean() > 0.02  # another seed, other views
    # Each image's views depend on the seed and its position only, not on the batch
    # (up to float rounding: matmul blocking depends on the batch size).
    head, _ = aug.augment_pair(images[:5], AugmentPolicy(blur=True), 7)
    np.testing.assert_allclose(head.numpy(), a.numpy()[:5], atol=1e-5)


def test_identity_policy_returns_the_input():
    images = _images(16)
    expected = images.astype(np.float32) / 255.0
    np.testing.assert_allclose(aug.augment_batch(images, IDENTITY, 3).numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(_per_image(images, IDENTITY), expected, atol=1e-6)


def test_compiles_under_xla_and_matches_eager():
    import tensorflow as tf

    images = tf.constant(_images(16))
    policy = AugmentPolicy(blur=True)
    step = tf.function(lambda x, s: aug.augment_pair(x, policy, s), jit_compile=True)
    xla_a, xla_b = step(images, tf.constant(11))
    eager_a, eager_b = aug.augment_pair(images, policy, 11)
    np.testing.assert_allclose(xla_a.numpy(), eager_a.numpy(), atol=1e-4)
    np.testing.assert_allclose(xla_b.numpy(), eager_b.numpy(), atol=1e-4)


def _op_boxes(count: int, policy: AugmentPolicy, size: int = 32) -> np.ndarray:
    """[count, 4] (y, x, h, w) from tf.image.stateless_sample_distorted_bounding_box, called
    as the official code calls tf.image.sample_distorted_bounding_box."""
    import tensorflow as tf

    @tf.function
    def boxes(seeds):
        def one(seed):
            begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
                [size, size, 3],
                bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
                seed=seed,
                min_object_covered=0.1,
                aspect_ratio_range=(policy.crop_aspect_min, policy.crop_aspect_max),
                area_range=(policy.crop_area_min, policy.crop_area_max),
                max_attempts=100,
                use_image_if_no_bounding_boxes=True,
            )
            return tf.concat([begin[:2], extent[:2]], 0)

        return tf.map_fn(one, seeds, fn_output_signature=tf.int32)

    return boxes(tf.stack([tf.range(count), tf.fill([count], 7)], axis=1)).numpy()


def _our_boxes(count: int, policy: AugmentPolicy, chunk: int = 20000) -> np.ndarray:
    from simclr.augment import crop

    return np.concatenate(
        [
            np.stack([b.numpy() for b in crop.sample_crop_boxes(seed, chunk, policy)], axis=1)
            for seed in range(count // chunk)
        ]
    )


QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


@pytest.mark.parametrize(
    "policy",
    [AugmentPolicy(), AugmentPolicy(crop_area_min=0.3, crop_area_max=0.6, crop_aspect_max=2.0)],
    ids=["simclr", "narrow"],
)
def test_crop_boxes_are_distributed_as_tensorflows_sampler(policy):
    """100k boxes each: area, aspect and position quantiles and means against the op's."""
    ours, theirs = _our_boxes(100_000, policy), _op_boxes(100_000, policy)
    for boxes in (ours, theirs):  # whole pixels inside the image
        y, x, h, w = boxes.T
        assert y.min() >= 0 and x.min() >= 0 and (y + h).max() <= 32 and (x + w).max() <= 32
    measures = {  # name: (function of the boxes, largest quantile gap, largest mean gap)
        "area": (lambda b: b[:, 2] * b[:, 3] / 1024, 0.02, 0.004),
        "aspect": (lambda b: b[:, 3] / b[:, 2], 0.03, 0.004),
        "y": (lambda b: b[:, 0], 1.0, 0.1),
        "x": (lambda b: b[:, 1], 1.0, 0.1),
    }
    for name, (measure, quantile_gap, mean_gap) in measures.items():
        a, b = measure(ours), measure(theirs)
        gaps = np.abs(np.quantile(a, QUANTILES) - np.quantile(b, QUANTILES))
        assert gaps.max() <= quantile_gap + 1e-9, (name, gaps)
        assert abs(a.mean() - b.mean()) < mean_gap, (name, a.mean(), b.mean())


def test_crop_resize_matches_tf_image_resize_bicubic_under_xla():
    import tensorflow as tf
    from simclr.augment import crop

    images = np.random.default_rng(1).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    boxes = crop.sample_crop_boxes(3, 64, AugmentPolicy())
    flip = tf.constant(np.arange(64) % 2 == 1)
    crop = tf.function(crop.crop_resize, jit_compile=True)
    ours = crop(tf.constant(images), boxes, flip).numpy()
    y, x, h, w = (b.numpy() for b in boxes)
    for i in range(64):
        piece = tf.image.convert_image_dtype(
            images[i, y[i] : y[i] + h[i], x[i] : x[i] + w[i]], tf.float32
        )
        want = tf.image.resize(piece[None], [32, 32], method="bicubic")[0].numpy()
        want = want[:, ::-1] if flip[i] else want
        np.testing.assert_allclose(ours[i], want, atol=2e-6, err_msg=f"image {i}")


def _colour_images(count: int) -> np.ndarray:
    """float32 [count,32,32,3] in [0,1] with greys, saturated and dark pixels among them."""
    rng = np.random.default_rng(2)
    x = rng.uniform(0.0, 1.0, (count, 32, 32, 3)).astype(np.float32)
    x[:, :4] = x[:, :4, :, :1]  # grey rows
    x[:, 4:6, :, 0] = 0.0  # saturated
    x[:, 6:8] = 0.0  # black
    return x


@pytest.mark.parametrize(
    "op, reference, low, high",
    [
        ("brightness", "adjust_brightness", -0.8, 0.8),
        ("contrast", "adjust_contrast", 0.0, 2.0),
        ("saturation", "adjust_saturation", 0.0, 2.0),
        ("hue", "adjust_hue", -0.5, 0.5),
    ],
)
def test_batched_colour_op_equals_tf_image_op_per_image_under_xla(op, reference, low, high):
    import tensorflow as tf

    images = _colour_images(48)
    amounts = np.random.default_rng(3).uniform(low, high, 48).astype(np.float32)
    from tests.fixtures_colour import one_colour_op

    batched = tf.function(lambda x, a: one_colour_op(x, op, a), jit_compile=True)
    ours = batched(tf.constant(images), tf.constant(amounts)).numpy()
    tf_op = getattr(tf.image, reference)
    want = np.stack([tf_op(images[i], amounts[i]).numpy() for i in range(48)]).clip(0.0, 1.0)
    assert np.abs(ours - want).max() <= 1e-4, np.abs(ours - want).max()


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_jitter_composition_equals_the_official_per_image_ops(version):
    """Whole views (random op order, clips, grayscale, flip) against `augment_image`,
    which uses tf.image ops; an identity crop, so that both draw nothing else."""
    policy = dataclass_replace(
        IDENTITY, flip_prob=0.5, color_jitter_prob=0.8, grayscale_prob=0.2,
        color_jitter_version=version,
    )  # fmt: skip
    import tensorflow as tf

    images = _images(40, seed=6)
    one = tf.function(lambda x, s: aug.augment_batch(x, policy, s), jit_compile=True)
    for i in range(40):
        ours = one(tf.constant(images[i : i + 1]), tf.constant(i))[0].numpy()
        want = aug.augment_image(images[i], policy, i).numpy()
        np.testing.assert_allclose(ours, want, atol=1e-4, err_msg=f"image {i}")


def test_v1_brightness_adds_and_v2_multiplies():
    only = dict(color_jitter_prob=1.0, color_jitter_random_order=False)
    images = np.full((200, 32, 32, 3), 100, np.uint8)
    base = images / 255.0
    brightness_only = dict(only, color_jitter_strength=0.5)
    v1 = aug.augment_batch(images, dataclass_replace(IDENTITY, **brightness_only), 0).numpy()
    # A flat grey image: contrast (per-channel mean), saturation and hue leave it alone,
    # so the view is the grey level moved by brightness alone.
    shift = v1[:, 0, 0, 0] - base[:, 0, 0, 0]
    assert shift.min() < -0.3 and shift.max() > 0.3  # additive, up to +-0.4
    v2_policy = dataclass_replace(IDENTITY, **brightness_only, color_jitter_version="v2")
    v2 = aug.augment_batch(images, v2_policy, 0).numpy()
    ratio = v2[:, 0, 0, 0] / base[:, 0, 0, 0]
    assert ratio.min() < 0.7 and ratio.max() > 1.3 and ratio.max() <= 1.4 + 1e-5


def test_flip_rate_is_near_the_probability():
    images = _images(1000, seed=1)
    policy = dataclass_replace(IDENTITY, flip_prob=0.5)
    views = aug.augment_batch(images, policy, 0).numpy()
    source = images.astype(np.float32) / 255.0
    same = np.abs(views - source).max(axis=(1, 2, 3)) < 1e-5
    flipped = np.abs(views - source[:, :, ::-1]).max(axis=(1, 2, 3)) < 1e-5
    assert np.all(same | flipped)
    assert 0.45 < flipped.mean() < 0.55


def test_grayscale_and_jitter_rates():
    images = _images(1000, seed=2)
    views = aug.augment_batch(images, AugmentPolicy(), 1).numpy()
    grey = (np.abs(views[..., 0] - views[..., 1]).max(axis=(1, 2)) < 1e-6) & (
        np.abs(views[..., 1] - views[..., 2]).max(axis=(1, 2)) < 1e-6
    )
    assert 0.16 < grey.mean() < 0.24
    # Colour jitter alone (p=0.8): about 20% of the views are left as they were.
    jitter_only = dataclass_replace(IDENTITY, color_jitter_prob=0.8)
    jittered = aug.augment_batch(images, jitter_only, 2).numpy()
    unchanged = np.abs(jittered - images / 255.0).max(axis=(1, 2, 3)) < 1e-6
    assert 0.16 < unchanged.mean() < 0.24


def test_blur_smooths_and_keeps_constant_regions():
    images = _images(64, seed=4)
    always = dataclass_replace(IDENTITY, blur=True, blur_prob=1.0, blur_sigma_min=1.0)
    blurred = aug.augment_batch(images, always, 0).numpy()
    source = images / 255.0
    # Interior of an 8x8 constant block is unchanged by a normalised 3-tap kernel.
    np.testing.assert_allclose(blurred[:, 9:15, 9:15], source[:, 9:15, 9:15], atol=1e-5)
    # Edge energy away from the border (zero padding darkens the border rows).
    edges = lambda x: np.square(np.diff(x[:, 2:-2], axis=1)).mean()  # noqa: E731
    assert edges(blurred) < 0.8 * edges(source)
    halves = aug.augment_batch(images, dataclass_replace(always, blur_prob=0.5), 1).numpy()
    changed = np.abs(halves - source).max(axis=(1, 2, 3)) > 1e-6
    assert 0.3 < changed.mean() < 0.7


def test_batched_and_per_image_agree_statistically():
    images = _images(600, seed=5)
    policy = AugmentPolicy()
    batched = aug.augment_batch(images, policy, 9).numpy().mean(axis=(1, 2, 3))
    per_image = _per_image(images, policy, seed=9).mean(axis=(1, 2, 3))
    assert abs(batched.mean() - per_image.mean()) < 0.03
    assert batched.std() == pytest.approx(per_image.std(), rel=0.15)
    source_spread = (images / 255.0).mean(axis=(1, 2, 3)).std()
    assert batched.std() > source_spread  # brightness/contrast jitter widens the spread


def dataclass_replace(policy: AugmentPolicy, **changes) -> AugmentPolicy:
    import dataclasses

    return dataclasses.replace(policy, **changes).validate()


# -------------------------------------------------------------------------------- task


def _run_task(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "components")}
    return subprocess.run(
        [sys.executable, "-m", "simclr.tasks.augment", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_task_writes_policy_preview_and_metrics(tiny_prepared_data, tmp_path):
    from PIL import Image

    out = tmp_path / "augment"
    result = _run_task(
        f"--data_dir={tiny_prepared_data}",
        f"--output_dir={out}",
        "--num_preview_images=4",
        "--views_per_image=5",
        "--flip_prob=0.3",
        "--blur",
        "--benchmark_batch_size=32",
        "--benchmark_seconds=0.2",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    policy = aug.load_policy(str(out / "policy.json"))
    assert policy == AugmentPolicy(flip_prob=0.3, blur=True)
    with Image.open(out / "preview.png") as preview:
        # 4 rows and 1 + 5 columns of 96x96 tiles, 4 px gutters (8 more after the original).
        assert preview.size == (4 + 6 * (96 + 4) + 8, 4 + 4 * (96 + 4))
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "images_per_second",
        "per_image_map_images_per_second",
        "speedup",
        "batch_size",
        "device",
    ):
        assert key in metrics
    assert metrics["images_per_second"] > 0 and metrics["batch_size"] == 32
    assert metrics["speedup"] == pytest.approx(
        metrics["images_per_second"] / metrics["per_image_map_images_per_second"], rel=0.01
    )


def test_task_rejects_a_bad_policy_value(tmp_path):
    out = tmp_path / "augment"
    result = _run_task(f"--data_dir={tmp_path}", f"--output_dir={out}", "--grayscale_prob=1.5")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "grayscale_prob" in lines[0]
    assert not (out / "policy.json").exists()


def test_policy_file_not_in_utf8_is_one_line_through_pretrain(real_prepared_data, tmp_path):
    """issue 19: a Latin-1 policy.json used to end in a UnicodeDecodeError traceback."""
    from tests.fixtures_train import pretrain_cli

    policy = tmp_path / "policy.json"
    policy.write_bytes('{"colour_strength_note": "d\u00e9faut", "blur": false}'.encode("latin-1"))
    with pytest.raises(UserError, match="not a UTF-8 JSON policy file"):
        aug.load_policy(str(policy))
    proc = pretrain_cli(
        [
            f"--data_dir={real_prepared_data}",
            f"--output_dir={tmp_path / 'out'}",
            f"--policy={policy}",
            "--encoder=resnet18",
            "--width_multiplier=0.125",
            "--batch_size=32",
            "--max_train_examples=64",
            "--epochs=1",
        ]
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not a UTF-8 JSON policy file" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
