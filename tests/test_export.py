"""The servable SavedModel (simclr.export) on real CIFAR-10 JPEG/PNG files.

Loaded by a fresh interpreter that cannot import simclr; saved_model_cli; TFSMLayer
fine-tuning (Keras 3.15 keras/src/export/tfsm_layer.py: the reloaded variables are
the layer's weights). Batches of gradient steps are even-sized: on this machine TF 2.21
with oneDNN crashes the process (glibc heap corruption) in ResNet backward passes at
batch sizes 1 and 3, with or without a SavedModel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures_images import cifar_jpegs

N_IMAGES = 8


@pytest.fixture(scope="module")
def encoder():
    import keras
    from simclr.model import build_encoder

    keras.utils.set_random_seed(3)
    model = build_encoder("resnet18", 0.125)
    # Non-trivial BatchNorm state (as after training): zero-init gammas hide whole branches.
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            dim = layer.gamma.shape
            layer.gamma.assign(rng.uniform(0.5, 1.5, dim).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.1, dim).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, dim).astype("float32"))
    return model


@pytest.fixture(scope="module")
def exported(encoder, tmp_path_factory) -> Path:
    from simclr.export import export_saved_model

    out = tmp_path_factory.mktemp("export") / "encoder"
    meta = export_saved_model(encoder, {"stem": "cifar", "seed": 3}, str(out))
    assert meta["size_bytes"] > 100_000
    return out / "saved_model"


@pytest.fixture(scope="module")
def real_files():
    """(JPEG bytes, PNG bytes of the same decoded pixels, pixels from TF's JPEG decoder)."""
    import tensorflow as tf

    jpegs = [data for _, _, data in cifar_jpegs().files[:N_IMAGES]]
    pixels = np.stack([tf.io.decode_jpeg(j, channels=3).numpy() for j in jpegs])
    pngs = [tf.io.encode_png(p).numpy() for p in pixels]
    return jpegs, pngs, pixels


def _keras_features(encoder, pixels: np.ndarray) -> np.ndarray:
    from simclr.model import make_image_encoder

    return make_image_encoder(encoder).predict(pixels, verbose=0)


_NO_SIMCLR = textwrap.dedent(
    """
    import importlib.abc, importlib.util, sys
    sys.path = [p for p in sys.path if not p.rstrip("/").endswith(("components", "pipelines"))]

    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("simclr", "simclr_pipeline", "tests"):
                raise ImportError(f"{name} must not be needed to serve the model")

    sys.meta_path.insert(0, _Block())
    assert "simclr" not in sys.modules
    """
)


def _serve_in_fresh_process(saved_model: Path, inputs: Path, out: Path) -> None:
    script = _NO_SIMCLR + textwrap.dedent(
        f"""
        import numpy as np, tensorflow as tf
        model = tf.saved_model.load({str(saved_model)!r})
        blobs = np.load({str(inputs)!r})
        serve = model.signatures["serving_default"]
        got = {{}}
        for kind in blobs.files:
            outputs = serve(image_bytes=tf.constant(list(blobs[kind])))
            got[kind + "_embedding"] = outputs["embedding"].numpy()
            got[kind + "_features"] = outputs["features"].numpy()
        np.savez({str(out)!r}, **got)
        print("simclr" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd="/"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_serving_default_in_a_process_without_simclr_matches_keras(
    encoder, exported, real_files, tmp_path
):
    jpegs, pngs, pixels = real_files
    inputs = tmp_path / "inputs.npz"
    # fixed-width bytes (no pickle); JPEG and PNG files end in FFD9 / the IEND CRC, so
    # numpy's stripping of trailing NULs cannot cut them
    np.savez(inputs, jpeg=np.array(jpegs), png=np.array(pngs))
    out = tmp_path / "out.npz"
    _serve_in_fresh_process(exported, inputs, out)
    got = np.load(out)
    want = _keras_features(encoder, pixels)
    for kind in ("jpeg", "png"):
        np.testing.assert_allclose(got[f"{kind}_features"], want, atol=1e-4, rtol=0)
        norms = np.linalg.norm(got[f"{kind}_embedding"], axis=1)
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)
        np.testing.assert_allclose(
            got[f"{kind}_embedding"], want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-4
        )
    assert np.abs(want[0] - want[1]).max() > 1e-3  # different pictures, different features


def test_config_json_carries_the_facts(exported):
    config = json.loads((exported / "config.json").read_text())
    assert config["image_size"] == 32 and config["stored_size"] == 32
    assert config["stem"] == "cifar" and config["encoder"] == "resnet18"
    assert config["width_multiplier"] == 0.125
    assert config["embedding_size"] == config["feature_dim"] == 64
    assert set(config["signatures"]) == {"serving_default", "serve_images"}


def test_uint8_signature_crops_the_centre_and_agrees_with_bytes(encoder, exported, real_files):
    """A 41x32 picture is at its stored size (shorter side 32): no resize, crop rows 5..36
    (google-research/simclr tf2/data_util.py center_crop: offset (41 - 32 + 1) // 2)."""
    import tensorflow as tf

    _, _, pixels = real_files
    rng = np.random.default_rng(1)
    tall = rng.integers(0, 256, (4, 41, 32, 3), dtype=np.uint8)
    tall[:, 5:37] = pixels[:4]
    model = tf.saved_model.load(str(exported))
    got = model.signatures["serve_images"](images=tf.constant(tall))["features"].numpy()
    np.testing.assert_allclose(got, _keras_features(encoder, pixels[:4]), atol=1e-4, rtol=0)
    pngs = tf.constant([tf.io.encode_png(t).numpy() for t in tall])
    from_bytes = model.signatures["serving_default"](image_bytes=pngs)["features"].numpy()
    np.testing.assert_allclose(from_bytes, got, atol=1e-5, rtol=0)


def test_any_size_is_brought_to_the_training_size(exported, real_files):
    """Larger and smaller pictures (down: Lanczos, up: bicubic) land near the 32x32 ones."""
    import tensorflow as tf
    from simclr.export import fit_to_training_size

    _, _, pixels = real_files
    big = tf.image.resize(pixels, (96, 128), method="bicubic")
    big = tf.cast(tf.clip_by_value(tf.round(big), 0, 255), tf.uint8)
    fitted = fit_to_training_size(big, 32).numpy()  # 96x128 -> 32x43 -> centre 32x32
    assert fitted.shape == (N_IMAGES, 32, 32, 3)
    centre = tf.image.resize(pixels, (32, 43), method="bicubic")[:, :, 6:38]
    assert np.abs(fitted.astype(float) - centre.numpy()).mean() < 12
    small = fit_to_training_size(pixels[:, ::2, ::2], 32).numpy()
    assert small.shape == (N_IMAGES, 32, 32, 3)
    model = tf.saved_model.load(str(exported))
    out = model.signatures["serve_images"](images=big)["embedding"].numpy()
    assert out.shape == (N_IMAGES, 64) and np.isfinite(out).all()


def test_saved_model_cli_run(exported, real_files, tmp_path):
    cli = Path(sys.executable).with_name("saved_model_cli")
    jpegs, _, _ = real_files
    np.save(tmp_path / "bytes.npy", np.array(jpegs[:2]))
    done = subprocess.run(
        [
            str(cli),
            "run",
            "--dir",
            str(exported),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"image_bytes={tmp_path / 'bytes.npy'}",
            "--outdir",
            str(tmp_path / "cli"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    embedding = np.load(tmp_path / "cli" / "embedding.npy")
    assert embedding.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)


def test_finetuning_through_tfsmlayer_changes_weights_and_lowers_the_loss(exported, real_files):
    import keras
    import tensorflow as tf

    _, _, pixels = real_files
    labels = np.array(cifar_jpegs().files[:N_IMAGES], dtype=object)[:, 1].astype(np.int64)
    layer = keras.layers.TFSMLayer(str(exported), call_endpoint="serve_images", trainable=True)
    assert layer.trainable_weights
    head = keras.layers.Dense(10)
    images = tf.constant(pixels)
    before = layer(images)["features"].numpy()
    weights_before = [w.numpy().copy() for w in layer.trainable_weights]
    optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    losses = []
    for _ in range(8):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, head(layer(images, training=True)["features"]))
        variables = layer.trainable_weights + head.trainable_weights
        grads = tape.gradient(loss, variables)
        assert all(g is not None for g in grads)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses
    changed = [
        not np.allclose(a, w.numpy())
        for a, w in zip(weights_before, layer.trainable_weights, strict=True)
    ]
    assert sum(changed) > len(changed) // 2
    # the function itself computes with the trained weights
    assert np.abs(layer(images)["features"].numpy() - before).max() > 1e-3


def test_export_refuses_a_wrong_image_size(encoder, tmp_path):
    from simclr.errors import UserError
    from simclr.export import export_saved_model

    with pytest.raises(UserError, match="image_size 64"):
        export_saved_model(encoder, {"image_size": 64}, str(tmp_path / "m"))
    assert not (tmp_path / "m" / "saved_model").exists()


def test_export_to_s3_and_load_back(encoder, s3_bucket, real_files):
    import tensorflow as tf
    from simclr.export import export_saved_model, load_saved_model

    uri = f"{s3_bucket}/run/encoder"
    export_saved_model(encoder, {}, uri)
    model, config = load_saved_model(uri.rsplit("/", 1)[0])
    assert config["embedding_size"] == 64
    _, pngs, pixels = real_files
    out = model.signatures["serving_default"](image_bytes=tf.constant(pngs[:2]))
    np.testing.assert_allclose(
        out["features"].numpy(), _keras_features(encoder, pixels[:2]), atol=1e-4
    )
    assert os.environ.get("AWS_ENDPOINT_URL_S3")


def test_config_facts_are_found_in_pretrains_nested_config(encoder):
    from simclr.export import _uint8_encoder, saved_model_config

    model = _uint8_encoder(encoder)
    nested = saved_model_config(model, {"pretrain": {"stem": "imagenet", "image_size": 32}})
    assert nested["stem"] == "imagenet" and nested["image_size"] == 32
    assert nested["width_multiplier"] == 0.125 and nested["encoder"] == "resnet18"
    assert saved_model_config(model, {})["stem"] == "cifar"  # auto: <= 32 px
    # the pipeline passes the flag as given: "auto" is recorded as the stem it built
    assert saved_model_config(model, {"stem": "auto"})["stem"] == "cifar"
