"""Training at resolution: the stem, the ImageNet preset, crops of stored pictures drawn
over the whole picture with the batched crop's distribution, 32 px from a JPEG folder
against the archive, and 64 px with the ImageNet stem on real photographs."""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from simclr import augment, data
from simclr.augment import blur, crop
from simclr.errors import UserError
from simclr.model import build_encoder, load_encoder, resolve_stem
from simclr.tasks import prepare_data

from tests.fixtures_images import CIFAR_JPEG_TAR, skimage_photos, write_class_folders
from tests.fixtures_train import PRETRAINED_SETTINGS

# ----------------------------------------------------------------------------- stem


def test_stem_follows_the_official_rule_and_can_be_overridden() -> None:
    # google-research/simclr tf2/model.py: resnet(..., cifar_stem=FLAGS.image_size <= 32)
    assert resolve_stem("auto", 32) == "cifar" and resolve_stem("auto", 33) == "imagenet"
    assert resolve_stem("cifar", 224) == "cifar" and resolve_stem("imagenet", 32) == "imagenet"
    with pytest.raises(UserError, match="--stem must be one of auto, cifar, imagenet"):
        resolve_stem("vit", 64)
    small = build_encoder("resnet18", 0.125, image_size=32)
    large = build_encoder("resnet18", 0.125, image_size=64)
    names = {layer.name: layer for layer in large.layers}
    assert names["stem_conv"].kernel_size == (7, 7) and names["stem_conv"].strides == (2, 2)
    assert names["stem_pool"].pool_size == (3, 3) and names["stem_pool"].strides == (2, 2)
    assert names["stem_pool"].output.shape[1:3] == (16, 16)  # 64 -> 32 (conv) -> 16 (pool)
    assert "stem_pool" not in {layer.name for layer in small.layers}
    assert {layer.name: layer for layer in small.layers}["stem_conv"].kernel_size == (3, 3)
    assert large.simclr_spec["stem"] == "imagenet" and large.simclr_spec["image_size"] == 64
    forced = build_encoder("resnet18", 0.125, image_size=64, stem="cifar")
    assert "stem_pool" not in {layer.name for layer in forced.layers}
    assert forced.inputs[0].shape[1:] == (64, 64, 3)


def test_policy_preset_follows_the_image_size() -> None:
    assert augment.default_policy(32) == augment.AugmentPolicy()  # CIFAR-10's, unchanged
    imagenet = augment.default_policy(64)
    assert imagenet.color_jitter_strength == 1.0 and imagenet.blur
    assert imagenet.blur_kernel_fraction == 0.1 and blur.blur_radius(224, imagenet) == 11
    assert imagenet.crop_area_min == 0.08 and imagenet.flip_prob == 0.5


# ----------------------------------------------------------------------------- crops


def _ramp_png(width: int, height: int) -> bytes:
    """R = column index, G = row index: a crop shows where it came from."""
    x = np.broadcast_to(np.arange(width, dtype=np.uint8)[None], (height, width))
    y = np.broadcast_to(np.arange(height, dtype=np.uint8)[:, None], (height, width))
    pixels = np.stack([x, y, np.zeros_like(x)], -1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _boxes_from_crops(crops: np.ndarray) -> tuple[np.ndarray, ...]:
    """(x0, y0, w, h, flipped) of each crop, from its ramps (bicubic keeps a ramp linear)."""
    size = crops.shape[1]
    r = crops[..., 0].astype(np.float64)
    g = crops[..., 1].astype(np.float64)
    mid = size // 2
    left, right = r[:, mid, 0], r[:, mid, -1]
    flipped = left > right
    first, last = np.minimum(left, right), np.maximum(left, right)
    w = (last - first) * size / (size - 1)
    h = (g[:, -1, mid] - g[:, 0, mid]) * size / (size - 1)
    x0 = first + 0.5 - 0.5 * w / size
    y0 = g[:, 0, mid] + 0.5 - 0.5 * h / size
    return x0, y0, w, h, flipped


_BARE = augment.AugmentPolicy(color_jitter_prob=0.0, grayscale_prob=0.0)  # crop and flip only


def _training_views(encoded, height, width, seeds, policy, size, stored_size):
    """Both views of each seed's crops, through the training path: `data.crop_windows`
    in tf.data, `data.batch_crop_windows`, `augment.augment_windows` (float [N, 2, S, S, 3])."""
    import tensorflow as tf

    canvas = data.crop_canvas(stored_size, policy)
    crops = tf.data.Dataset.from_tensor_slices(seeds).map(
        lambda s: data.crop_windows(encoded, height, width, s, policy, canvas)
    )
    (batch,) = list(data.batch_crop_windows(crops, len(seeds), canvas))
    view_a, view_b = augment.augment_windows(batch, policy, 5, size)
    return np.stack([view_a.numpy(), view_b.numpy()], 1), batch


def test_crops_cover_the_whole_stored_picture_with_the_batched_distribution() -> None:
    import tensorflow as tf

    width, height, size, n = 120, 60, 24, 300
    encoded = tf.constant(_ramp_png(width, height))
    seeds = np.stack([np.full(n, 7), np.arange(n)], 1).astype(np.int64)
    views, _ = _training_views(encoded, height, width, seeds, _BARE, size, height)
    crops = np.round(views * 255.0).reshape(-1, size, size, 3)
    x0, y0, w, h, flipped = _boxes_from_crops(crops)
    area = w * h / (width * height)
    # The box distribution of the batched crop (the kernel's), for the same picture size.
    ref_y, ref_x, ref_h, ref_w = (
        b.numpy().astype(np.float64) for b in crop.sample_crop_boxes(3, 2 * n, _BARE, height, width)
    )
    ref_area = ref_h * ref_w / (width * height)
    assert abs(area.mean() - ref_area.mean()) < 0.06, (area.mean(), ref_area.mean())
    assert area.min() > 0.08 - 0.03 and area.max() <= 1.0 + 0.03
    aspect = w / h
    assert aspect.min() > 0.75 - 0.08 and aspect.max() < 4 / 3 + 0.08
    # Over the whole picture, not a centre square: crops reach both side margins.
    assert (x0 < 25).any() and (x0 + w > 95).any()
    assert abs((x0 + w / 2).mean() - (ref_x + ref_w / 2).mean()) < 6
    assert 0.4 < flipped.mean() < 0.6  # flip probability 0.5
    # The two views of an image differ; the same seed gives the same crops.
    assert not np.array_equal(crops[0], crops[1])
    again, _ = _training_views(encoded, height, width, seeds[:1], _BARE, size, height)
    np.testing.assert_array_equal(again[0], views[0])


def test_device_resize_of_padded_crops_is_tensorflows_bicubic_resize() -> None:
    """Each view equals `tf.image.resize(crop, bicubic)` of its crop alone, flipped where
    drawn: the zero padding of the canvas never reaches a pixel."""
    import tensorflow as tf

    photo = np.asarray(Image.open(io.BytesIO(_ramp_png(90, 70))))
    rng = np.random.default_rng(3)
    photo = np.clip(photo + rng.integers(0, 120, photo.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "PNG")
    encoded = tf.constant(buffer.getvalue())
    seeds = np.stack([np.full(40, 2), np.arange(40)], 1).astype(np.int64)
    views, batch = _training_views(encoded, 70, 90, seeds, _BARE, 32, 70)
    flips = batch["flips"].numpy()
    assert 0 < flips.mean() < 1 and (batch["sizes"].numpy() < 70).any()
    for i in range(len(seeds)):
        for k in range(2):
            h, w = batch["sizes"].numpy()[i, k]
            crop = batch["crops"][k][i, :h, :w]
            want = tf.image.resize(
                tf.image.convert_image_dtype(crop, tf.float32), [32, 32], "bicubic"
            )
            want = tf.clip_by_value(want[:, ::-1] if flips[i, k] else want, 0.0, 1.0)
            np.testing.assert_allclose(views[i, k], want.numpy(), atol=2e-5)


def test_pre_cut_views_get_the_rest_of_the_policy_only() -> None:
    import tensorflow as tf

    rng = np.random.default_rng(0)
    canvas = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    batch = {
        "crops": (tf.constant(canvas), tf.constant(canvas[::-1])),
        "sizes": tf.fill([8, 2, 2], 16),
        "flips": tf.zeros([8, 2], tf.bool),
    }
    view_a, view_b = augment.augment_windows(batch, _BARE, 5, 16)
    # No colour op, a whole-canvas box at its own size, no flip: the views are the crops.
    np.testing.assert_allclose(view_a.numpy(), canvas / 255.0, atol=1e-6)
    np.testing.assert_allclose(view_b.numpy(), canvas[::-1] / 255.0, atol=1e-6)
    coloured_a, _ = augment.augment_windows(batch, augment.AugmentPolicy(), 5, 16)
    assert np.abs(coloured_a.numpy() - view_a.numpy()).mean() > 0.01


def test_the_canvas_holds_every_crop_of_an_elongated_picture() -> None:
    """A crop's sides stay within stored_size x the aspect extreme even for a 5:1
    panorama; only the whole-picture fallback is cut to the canvas, at its centre."""
    import tensorflow as tf

    width, height = 300, 60
    encoded = tf.constant(_ramp_png(width, height))
    canvas = data.crop_canvas(height, _BARE)
    assert canvas == 80  # 60 x 4/3
    seeds = np.stack([np.full(200, 1), np.arange(200)], 1).astype(np.int64)
    sizes = np.stack(
        [
            data.crop_windows(encoded, height, width, s, _BARE, canvas)[2].numpy()
            for s in tf.constant(seeds)
        ]
    )
    assert sizes.max() <= canvas and sizes[..., 1].max() > height
    # Fallback: an area range no box of the aspect range can meet.
    never = dataclasses.replace(_BARE, crop_area_min=0.9, crop_area_max=1.0)
    crop_0, _, fallback, _ = data.crop_windows(encoded, height, width, seeds[0], never, canvas)
    assert fallback.numpy().tolist() == [[height, canvas], [height, canvas]]
    whole = np.asarray(Image.open(io.BytesIO(encoded.numpy())))
    left = (width - canvas) // 2
    np.testing.assert_array_equal(crop_0.numpy(), whole[:, left : left + canvas])


# ---------------------------------------------------------------- 32 px: JPEG folder


def _cifar_train_jpegs(count: int):
    """The first `count` real CIFAR-10 training JPEGs (the archive fixture's images)."""
    jpegs, labels, classes = {}, None, None
    with tarfile.open(CIFAR_JPEG_TAR, "r:gz") as tar:
        for member in tar:
            if "/train/" in member.name and member.name.endswith(".jpg"):
                index = int(Path(member.name).stem)
                if index < count:
                    jpegs[index] = tar.extractfile(member).read()
            elif member.name.endswith("train_labels.txt"):
                labels = [int(v) for v in tar.extractfile(member).read().split()]
            elif member.name.endswith("classes.txt"):
                classes = tar.extractfile(member).read().decode().split()
    return [(i, labels[i], jpegs[i]) for i in range(count)], classes


def _knn_top1(model_dir: str, data_dir: str) -> float:
    """kNN top-1 of a saved encoder with the monitor's protocol on the archive's data:
    bank label_0.1 (500), queries the test split (1,000)."""
    from simclr.evaluate import knn_scores

    model, _ = load_encoder(model_dir)
    bank_x, bank_y = data.load_arrays(data_dir, "label_0.1")
    query_x, query_y = data.load_arrays(data_dir, "test")
    bank = model.predict(bank_x, batch_size=250, verbose=0)
    queries = model.predict(query_x, batch_size=250, verbose=0)
    return float(np.mean(knn_scores(bank, bank_y, queries, 10).argmax(1) == query_y))


@pytest.mark.slow
def test_32px_from_the_jpeg_folder_matches_the_archive(
    real_prepared_data: str, pretrained_run: str, tmp_path: Path
) -> None:
    """Scaled down from the demo's setting (10,000 images) to the suite's pretraining
    fixture (5,000 real images, ResNet-18 x1/8, batch 256, 4 epochs): the same images
    from a class-folder JPEG source and from the archive, trained alike; the noise is
    measured as the gap between two archive seeds."""
    from simclr.train import PretrainConfig, run

    images, classes = _cifar_train_jpegs(5000)
    write_class_folders(tmp_path / "jpegs", images, classes)
    folder_data = str(tmp_path / "folder-data")
    prepare_data.run(
        prepare_data.PrepareDataConfig(
            source=str(tmp_path / "jpegs"), output_dir=folder_data, test_fraction=0.0
        )
    )
    settings = {**PRETRAINED_SETTINGS, "monitor_every_epochs": 0}
    folder_run = str(tmp_path / "folder-run")
    run(PretrainConfig(data_dir=folder_data, output_dir=folder_run, **settings))
    archive_seed1 = str(tmp_path / "archive-seed1")
    run(
        PretrainConfig(
            data_dir=real_prepared_data, output_dir=archive_seed1, **{**settings, "seed": 1}
        )
    )
    config = json.loads((Path(folder_run) / "encoder" / "config.json").read_text())
    assert config["stem"] == "cifar" and config["image_size"] == 32
    folder = _knn_top1(folder_run, real_prepared_data)
    archive = _knn_top1(pretrained_run, real_prepared_data)
    archive_1 = _knn_top1(archive_seed1, real_prepared_data)
    noise = max(abs(archive - archive_1), 0.02)
    print(f"kNN top-1: folder {folder:.4f}, archive {archive:.4f} / {archive_1:.4f} (seed 1)")
    assert abs(folder - (archive + archive_1) / 2) <= 2 * noise, (folder, archive, archive_1)


# ----------------------------------------------------------- 64 px: ImageNet stem


def _photo_dataset(root: Path, copies: int = 20) -> None:
    """A class per scikit-image photograph; `copies` random crops of each at odd sizes
    and aspect ratios (JPEG), as a class-folder source."""
    rng = np.random.default_rng(0)
    for name, path in sorted(skimage_photos().items()):
        photo = Image.open(path).convert("RGB")
        folder = root / Path(name).stem
        folder.mkdir(parents=True)
        for k in range(copies):
            fw, fh = rng.uniform(0.5, 1.0, 2)
            w, h = max(8, int(photo.width * fw)), max(8, int(photo.height * fh))
            x, y = rng.integers(0, photo.width - w + 1), rng.integers(0, photo.height - h + 1)
            side = int(rng.integers(70, 300))
            crop = photo.crop((x, y, x + w, y + h))
            crop = crop.resize((side, max(8, int(side * h / w * rng.uniform(0.8, 1.25)))))
            crop.save(folder / f"{k:02d}.jpg", quality=90)


@pytest.mark.slow
def test_64px_imagenet_stem_on_photos_beats_random_init(tmp_path: Path) -> None:
    import keras
    from simclr.evaluate import knn_scores
    from simclr.model import make_image_encoder
    from simclr.train import PretrainConfig, run

    _photo_dataset(tmp_path / "photos")
    data_dir = str(tmp_path / "data")
    manifest = prepare_data.run(
        prepare_data.PrepareDataConfig(
            source=str(tmp_path / "photos"),
            output_dir=data_dir,
            image_size=64,
            test_fraction=0.25,
            label_fractions=(1.0,),
        )
    )
    assert manifest["stored_size"] == 73 and manifest["labelled"]
    out = str(tmp_path / "run")
    metrics = run(
        PretrainConfig(
            data_dir=data_dir,
            output_dir=out,
            encoder="resnet18",
            width_multiplier=0.125,
            epochs=30,
            batch_size=32,
            learning_rate=0.075,
            lr_scaling="sqrt",  # the official code's rule for small batches
            warmup_epochs=2,
            monitor_every_epochs=0,
            log_every_steps=50,
            seed=0,
        )
    )
    config = json.loads((Path(out) / "encoder" / "config.json").read_text())
    assert config["stem"] == "imagenet" and config["image_size"] == 64
    bank_x, bank_y = data.load_arrays(data_dir, "train")
    query_x, query_y = data.load_arrays(data_dir, "test")
    num_classes = len(manifest["class_names"])

    def top1(model) -> float:
        bank = model.predict(bank_x, batch_size=64, verbose=0)
        queries = model.predict(query_x, batch_size=64, verbose=0)
        return float(
            np.mean(knn_scores(bank, bank_y, queries, num_classes, k=5).argmax(1) == query_y)
        )

    pretrained = top1(load_encoder(out)[0])
    keras.utils.set_random_seed(0)
    random_init = top1(make_image_encoder(build_encoder("resnet18", 0.125, image_size=64)))
    print(f"64 px kNN top-1: pretrained {pretrained:.4f}, random init {random_init:.4f}, {metrics}")
    assert pretrained > random_init + 0.1, (pretrained, random_init)
