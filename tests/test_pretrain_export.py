"""pretrain publishes the servable SavedModel (simclr.export) with its other outputs.

A tiny pretrain CLI run on real CIFAR-10; its `encoder/saved_model/` loaded by a fresh
interpreter that cannot import simclr, whose `serving_default` on real JPEG bytes equals
the trained Keras encoder on TF's decoding of the same files. On gs:// and s3:// the
export lands beside encoder.keras; a failing export publishes nothing (no metrics.json,
no half SavedModel); the next run takes the previous export away before it trains.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from simclr import storage

from tests.fixtures_images import cifar_jpegs
from tests.fixtures_train import pretrain_cli
from tests.test_export import _serve_in_fresh_process

N_IMAGES = 8
# 64 real images, batch 16 (>= 8 per replica: oneDNN), 1 epoch = 4 steps; no monitor.
TINY = {
    "encoder": "resnet18",
    "width_multiplier": 0.125,
    "epochs": 1,
    "batch_size": 16,
    "max_train_examples": 64,
    "monitor_every_epochs": 0,
    "log_every_steps": 1,
    "checkpoint_every_steps": 100,
}


def _flags(settings: dict) -> list[str]:
    return [f"--{k}={v}" for k, v in settings.items()]


@pytest.fixture(scope="module")
def cli_run(real_prepared_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrain_export") / "run"
    done = pretrain_cli([f"--data_dir={real_prepared_data}", f"--output_dir={out}", *_flags(TINY)])
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_cli_run_writes_a_saved_model_that_serves_like_the_keras_encoder(cli_run, tmp_path):
    import tensorflow as tf
    from simclr.model import load_encoder

    saved = cli_run / "encoder" / "saved_model"
    config = json.loads((saved / "config.json").read_text())
    assert (config["image_size"], config["stem"], config["encoder"]) == (32, "cifar", "resnet18")
    assert config["embedding_size"] == 64 and config["width_multiplier"] == 0.125
    metrics = json.loads((cli_run / "metrics.json").read_text())
    assert metrics["saved_model_bytes"] == config["size_bytes"] > 100_000
    assert metrics["saved_model_seconds"] > 0

    jpegs = [data for _, _, data in cifar_jpegs().files[:N_IMAGES]]
    inputs, out = tmp_path / "inputs.npz", tmp_path / "out.npz"
    np.savez(inputs, jpeg=np.array(jpegs))
    _serve_in_fresh_process(saved, inputs, out)
    got = np.load(out)
    keras_encoder, _ = load_encoder(str(cli_run))
    pixels = np.stack([tf.io.decode_jpeg(j, channels=3).numpy() for j in jpegs])
    want = keras_encoder.predict(pixels, verbose=0)
    np.testing.assert_allclose(got["jpeg_features"], want, atol=1e-4, rtol=0)
    unit = want / np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got["jpeg_embedding"], unit, atol=1e-4)
    assert np.abs(want[0] - want[1]).max() > 1e-3  # different pictures, different features


def _train_in_process(data_dir: str, out: str, tmp_path: Path) -> dict:
    from simclr.train import PretrainConfig, run

    return run(
        PretrainConfig(
            data_dir=data_dir,
            output_dir=out,
            checkpoint_dir=str(tmp_path / "ckpt"),
            tensorboard_dir=str(tmp_path / "tb"),
            **{**TINY, "max_train_examples": 32},
        )
    )


@pytest.mark.parametrize("store", ["gcs_bucket", "s3_bucket"])
def test_object_store_output_holds_a_loadable_saved_model(
    store, request, tiny_prepared_data, tmp_path
):
    from simclr.export import load_saved_model

    bucket = request.getfixturevalue(store)
    out = f"{bucket}/run"
    _train_in_process(tiny_prepared_data, out, tmp_path)
    assert storage.exists(f"{out}/metrics.json")
    loaded, config = load_saved_model(out)
    assert config["embedding_size"] == 64 and config["stem"] == "cifar"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    served = loaded.signatures["serve_images"](images=images)["embedding"].numpy()
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


def test_failing_export_publishes_nothing_and_next_run_removes_old_export(
    tiny_prepared_data, tmp_path, monkeypatch
):
    """The export fails after its SavedModel is written into staging: no metrics.json, no
    saved_model/ (export.py stages it whole); a previous run's export is gone as well."""
    import simclr.export
    from simclr.errors import UserError

    out = tmp_path / "run"
    _train_in_process(tiny_prepared_data, str(out), tmp_path)
    assert (out / "encoder" / "saved_model" / "saved_model.pb").is_file()

    def no_space(path):
        assert (Path(path) / "saved_model.pb").is_file()  # written, not yet published
        raise UserError("disk full while exporting")

    monkeypatch.setattr(simclr.export, "_dir_size", no_space)

    shutil.rmtree(tmp_path / "ckpt")  # train again from scratch into the same output_dir
    with pytest.raises(UserError, match="disk full"):
        _train_in_process(tiny_prepared_data, str(out), tmp_path)
    assert not (out / "metrics.json").exists()
    assert not (out / "encoder" / "saved_model").exists()
    assert not list(out.parent.glob(".saved_model.tmp-*")) and not list(
        (out / "encoder").glob(".saved_model.tmp-*")
    )
