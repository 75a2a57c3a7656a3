"""ResNet encoders, projection head, encoder export (save/load, local and gs://)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from simclr import storage
from simclr.errors import UserError
from simclr.model import (
    ENCODERS,
    build_encoder,
    build_projection_head,
    load_encoder,
    make_image_encoder,
    save_encoder,
)

REPO = Path(__file__).resolve().parent.parent


def _images(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def _batchnorms(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += _batchnorms(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
    return found


@pytest.mark.parametrize(
    "name,width,dim,n_convs",
    [
        ("resnet18", 0.25, 128, 1 + 16 + 3),
        ("resnet34", 0.125, 64, 1 + 32 + 3),
        ("resnet50", 0.125, 256, 1 + 48 + 4),
    ],
)
def test_encoder_architecture(name, width, dim, n_convs):
    encoder = build_encoder(name, width)
    assert encoder.output_shape == (None, dim)
    convs = [layer for layer in encoder.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == n_convs  # stem + block convs + projection shortcuts
    stem = convs[0]
    assert stem.kernel_size == (3, 3) and stem.strides == (1, 1)  # CIFAR stem
    assert stem.filters == max(1, round(64 * width))
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in encoder.layers)
    # 32 -> 32 -> 16 -> 8 -> 4 before the global pool.
    assert encoder.get_layer("pool").input.shape[1:3] == (4, 4)
    # Only built-in Keras layers, so saved files load without custom objects.
    assert all(type(layer).__module__.startswith("keras.src.") for layer in encoder.layers)
    bns = _batchnorms(encoder)
    assert all(bn.momentum == 0.9 and bn.epsilon == 1e-5 and not bn.synchronized for bn in bns)
    # The last BN of each residual block starts at gamma = 0 (as the reference).
    n_blocks = sum(layer.name.endswith("_add") for layer in encoder.layers)
    zero_gamma = [bn for bn in bns if not np.any(bn.gamma.numpy())]
    assert len(zero_gamma) == n_blocks > 0


def test_encoder_forward_float32_and_options():
    assert ENCODERS == ("resnet18", "resnet34", "resnet50")
    encoder = build_encoder("resnet18", 0.125, sync_batchnorm=True, name_prefix="base_")
    assert all(bn.synchronized for bn in _batchnorms(encoder))
    assert all(layer.name.startswith("base_") for layer in encoder.layers)
    features = encoder(_images().astype("float32") / 255.0, training=True)
    assert features.shape == (3, 64) and str(features.dtype) == "<dtype: 'float32'>"
    assert np.all(np.isfinite(features.numpy()))
    assert max(1, round(64 * 0.001)) == build_encoder("resnet18", 0.001).layers[1].filters
    with pytest.raises(UserError, match="encoder"):
        build_encoder("vgg16")


def test_mixed_precision_output_is_float32(tmp_path):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        encoder = build_encoder("resnet18", 0.125)
        head = build_projection_head(encoder.output_shape[-1])
        assert encoder.get_layer("stem_conv").compute_dtype == "bfloat16"
        features = encoder(_images().astype("float32") / 255.0)
        projections = head(features)
    finally:
        keras.config.set_dtype_policy(previous)
    assert features.dtype.name == "float32" and projections.dtype.name == "float32"
    # The export computes in float32.
    save_encoder(encoder, str(tmp_path), config={})
    model, _ = load_encoder(str(tmp_path))
    assert {layer.compute_dtype for layer in model.get_layer(encoder.name).layers} == {"float32"}
    images = _images()
    want = build_and_copy_float32(encoder)(images.astype("float32") / 255.0)
    np.testing.assert_allclose(model(images).numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


def build_and_copy_float32(encoder: keras.Model) -> keras.Model:
    clone = build_encoder("resnet18", 0.125)
    clone.set_weights(encoder.get_weights())
    return clone


@pytest.mark.parametrize("num_layers", [2, 3])
def test_projection_head_layout(num_layers):
    head = build_projection_head(64, num_layers=num_layers)
    denses = [layer for layer in head.layers if isinstance(layer, keras.layers.Dense)]
    bns = _batchnorms(head)
    assert [d.units for d in denses] == [64] * (num_layers - 1) + [128]  # hidden = input dim
    assert not any(d.use_bias for d in denses)
    assert [bn.center for bn in bns] == [True] * (num_layers - 1) + [False]
    assert all(bn.scale for bn in bns)
    relus = [layer for layer in head.layers if isinstance(layer, keras.layers.ReLU)]
    assert len(relus) == num_layers - 1  # none after the last layer
    out = head(np.random.default_rng(0).normal(size=(4, 64)).astype("float32"), training=True)
    assert out.shape == (4, 128)
    assert build_projection_head(32, hidden_dim=16, output_dim=8).output_shape == (None, 8)


def test_save_and_load_round_trip_in_fresh_process(tmp_path):
    encoder = build_encoder("resnet18", 0.125, sync_batchnorm=True)
    # Non-trivial BN statistics, so that a weight mix-up would show.
    encoder(_images(8).astype("float32") / 255.0, training=True)
    out = tmp_path / "pretrain"
    save_encoder(encoder, str(out / "encoder"), config={"epochs": 3, "temperature": 0.5})
    assert sorted(os.listdir(out / "encoder")) == ["config.json", "encoder.keras"]  # no temp files
    config = json.loads((out / "encoder" / "config.json").read_text())
    assert config == {
        "encoder": "resnet18",
        "width_multiplier": 0.125,
        "feature_dim": 64,
        "image_size": 32,
        "stem": "cifar",
        "epochs": 3,
        "temperature": 0.5,
    }

    images = _images(4, seed=1)
    want = make_image_encoder(encoder)(images).numpy()
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(f"""
        import json, numpy as np
        from simclr.model import load_encoder
        model, config = load_encoder({str(out)!r})
        features = model(np.load({str(tmp_path / "images.npy")!r}))
        print(json.dumps({{"config": config, "features": np.asarray(features).tolist(),
                          "dtype": str(model.inputs[0].dtype)}}))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO / "components"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded["config"] == config and loaded["dtype"] == "uint8"
    np.testing.assert_allclose(loaded["features"], want, rtol=1e-4, atol=1e-5)

    # In this process too, from the encoder/ dir itself; BN saved unsynchronised.
    model, _ = load_encoder(str(out / "encoder"))
    assert not any(bn.synchronized for bn in _batchnorms(model))
    np.testing.assert_allclose(model(images).numpy(), want, rtol=1e-4, atol=1e-5)


def test_load_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no encoder at"):
        load_encoder(str(tmp_path))
    (tmp_path / "encoder").mkdir()
    (tmp_path / "encoder" / "encoder.keras").write_bytes(b"not a zip file")
    with pytest.raises(UserError, match="cannot load encoder") as info:
        load_encoder(str(tmp_path))
    assert "\n" not in str(info.value)


def test_save_and_load_on_gcs(gcs_bucket):
    encoder = build_encoder("resnet18", 0.125)
    uri = f"{gcs_bucket}/run1"
    save_encoder(encoder, storage.join(uri, "encoder"), config={"epochs": 1})
    assert storage.list_files(uri) == ["encoder/config.json", "encoder/encoder.keras"]
    model, config = load_encoder(uri)
    assert config["feature_dim"] == 64 and config["epochs"] == 1
    images = _images(2)
    np.testing.assert_allclose(
        model(images).numpy(), make_image_encoder(encoder)(images).numpy(), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(UserError, match="no encoder at"):
        load_encoder(f"{gcs_bucket}/missing")
