"""prepare_data, augment and evaluate with every location on s3:// (a moto server on
127.0.0.1): the archive, the prepared data, the policy, the encoder, the outputs and
the TensorBoard logs. (pretrain: test_pretrain_s3.py; the pipeline: test_pipeline_s3.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from simclr import data, storage
from simclr.errors import UserError
from simclr.tasks import augment, evaluate, prepare_data

from tests.fixtures_data import make_synthetic_archive


def test_prepare_augment_evaluate_on_s3(s3_bucket, tmp_path, monkeypatch):
    import keras
    from simclr.model import build_encoder, save_encoder

    monkeypatch.setenv("SIMCLR_CACHE_DIR", str(tmp_path / "cache"))
    archive = make_synthetic_archive(tmp_path, layout="python", num_train=100, num_test=30, seed=3)
    source = f"{s3_bucket}/archives/{archive.path.name}"
    storage.upload_file(str(archive.path), source)

    data_uri = f"{s3_bucket}/prepared"
    manifest = prepare_data.run(
        prepare_data.PrepareDataConfig(source=source, output_dir=data_uri, num_shards=2)
    )
    assert data.load_manifest(data_uri) == manifest
    x, y = data.load_arrays(data_uri, "test")
    np.testing.assert_array_equal(x, archive.test_images)
    np.testing.assert_array_equal(y, archive.test_labels)
    with pytest.raises(UserError, match=f"^{source}x: not found$"):
        prepare_data.run(prepare_data.PrepareDataConfig(source=source + "x", output_dir=data_uri))

    policy_uri = f"{s3_bucket}/augment"
    metrics = augment.run(
        augment.AugmentConfig(
            data_dir=data_uri, output_dir=policy_uri, benchmark_seconds=0.2, num_preview_images=2
        )
    )
    assert storage.read_json(f"{policy_uri}/metrics.json") == metrics
    assert {"policy.json", "preview.png"} <= set(storage.list_files(policy_uri))

    keras.utils.set_random_seed(7)
    model_dir = tmp_path / "model"
    save_encoder(
        build_encoder("resnet18", 0.125),
        str(model_dir / "encoder"),
        config={"encoder": "resnet18", "width_multiplier": 0.125},
    )
    model_uri = f"{s3_bucket}/run"
    storage.upload_dir(str(model_dir), model_uri)
    out_uri, tb_uri = f"{s3_bucket}/eval", f"{s3_bucket}/tb"
    result = evaluate.run(
        evaluate.EvaluateConfig(
            data_dir=data_uri,
            model_dir=model_uri,
            output_dir=out_uri,
            tensorboard_dir=tb_uri,
            protocols="knn",
            baseline="none",
            max_train_examples=50,
            max_test_examples=30,
            embedding="pca",
        )
    )
    assert storage.read_json(f"{out_uri}/metrics.json") == result
    assert result["num_test"] == 30 and "knn_top1" in result
    assert any(f.startswith("eval/events.out.tfevents") for f in storage.list_files(tb_uri))
