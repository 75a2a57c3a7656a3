"""The embed task and simclr.embeddings: Parquet shards of real CIFAR-10 embeddings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from simclr import embeddings as emb

from tests.fixtures_images import cifar_jpegs, write_class_folders

REPO = Path(__file__).resolve().parents[1]


def _run(**kwargs):
    from simclr.tasks.embed import EmbedConfig, run

    return run(EmbedConfig(**kwargs))


@pytest.fixture(scope="module")
def embedded(pretrained_run, real_prepared_data, tmp_path_factory) -> tuple[str, dict]:
    out = str(tmp_path_factory.mktemp("embed") / "out")
    metrics = _run(
        model_dir=pretrained_run, data_dir=real_prepared_data, output_dir=out, rows_per_shard=2000
    )
    print("embed metrics:", {k: metrics[k] for k in ("num_images", "images_per_second")})
    return out, metrics


def test_one_row_per_image_in_order(embedded, real_prepared_data):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from simclr import data

    out, metrics = embedded
    assert metrics["num_images"] == 6000 and metrics["images_per_second"] > 0
    assert metrics["splits"]["train"]["files"] == [
        f"train-0000{i}-of-00003.parquet" for i in range(3)
    ]
    saved = json.loads(Path(out, "metrics.json").read_text())
    assert saved["num_images"] == 6000
    for split, n in (("train", 5000), ("test", 1000)):
        got = emb.read_embeddings(out, split)
        _, labels = data.load_arrays(real_prepared_data, split)
        np.testing.assert_array_equal(got.ids, np.arange(n))
        np.testing.assert_array_equal(got.labels, labels)
        assert got.embeddings.shape == (n, 64) and np.isfinite(got.embeddings).all()
        np.testing.assert_allclose(np.linalg.norm(got.embeddings, axis=1), 1.0, atol=1e-5)
        assert got.metadata["split"] == split and got.metadata["class_names"][0] == "airplane"
    # any Parquet reader: a fixed-size list of float32
    table = pq.read_table(Path(out, "test-00000-of-00001.parquet"))
    kind = table.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(kind) and kind.list_size == 64
    assert kind.value_type == pa.float32()
    assert table.num_rows == 1000


def test_knn_from_parquet_equals_evaluate(embedded, pretrained_run, real_prepared_data):
    from simclr import data
    from simclr import evaluate as ev
    from simclr.model import load_encoder

    out, _ = embedded
    train, test = emb.read_embeddings(out, "train"), emb.read_embeddings(out, "test")
    scores = ev.knn_scores(train.embeddings, train.labels, test.embeddings, 10)
    from_parquet = ev.topk_accuracy(scores, test.labels, 1)

    model, _ = load_encoder(pretrained_run)
    x_train, y_train = data.load_arrays(real_prepared_data, "train")
    x_test, y_test = data.load_arrays(real_prepared_data, "test")
    eval_data = ev.EvalData([str(i) for i in range(10)], x_train, y_train, x_test, y_test)
    result = ev.evaluate_encoder(lambda: model, eval_data, ["knn"], ev.EvalOptions())
    assert from_parquet == result.metrics["knn_top1"]
    agree = np.mean(np.argmax(scores, axis=1) == result.predictions["knn"])
    assert agree >= 0.999, agree
    assert from_parquet > 0.2  # a trained encoder (chance is 0.1)


def test_image_dataset_rows_carry_paths_and_match_the_source_files(
    pretrained_run, tmp_path, gcs_bucket
):
    """A prepared image folder (manifest v2, PNG records) written to gs://: each row's
    embedding is the encoder's on the source JPEG as Pillow decodes it."""
    from PIL import Image
    from simclr.evaluate import l2_normalize
    from simclr.images import IngestOptions, ingest_images
    from simclr.model import load_encoder

    jpegs = cifar_jpegs()
    files = write_class_folders(tmp_path / "photos", jpegs.per_class(6), jpegs.classes)
    manifest = ingest_images(
        str(tmp_path / "photos"),
        str(tmp_path / "prepared"),
        IngestOptions(image_size=32, test_fraction=0.2, label_fractions=(), workers=1),
    )
    out = f"{gcs_bucket}/embeddings"
    metrics = _run(
        model_dir=pretrained_run, data_dir=str(tmp_path / "prepared"), output_dir=out, batch_size=8
    )
    assert metrics["num_images"] == 60
    model, _ = load_encoder(pretrained_run)
    for split in ("train", "test"):
        got = emb.read_embeddings(out, split)
        assert len(got.ids) == manifest["splits"][split]["num_examples"]
        np.testing.assert_array_equal(got.ids, np.arange(len(got.ids)))
        assert [files[p] for p in got.paths] == got.labels.tolist()
        pixels = np.stack([np.asarray(Image.open(tmp_path / "photos" / p)) for p in got.paths])
        want = l2_normalize(model.predict(pixels, verbose=0))
        np.testing.assert_allclose(got.embeddings, want, atol=1e-4)


def test_an_image_folder_is_embedded_without_prepare_data(pretrained_run, tmp_path):
    """--data_dir an image folder (class subfolders): ingested first, as prepare_data
    would; a duplicate and an empty file are skipped; rows match the source pictures."""
    import shutil

    from PIL import Image
    from simclr.evaluate import l2_normalize
    from simclr.model import load_encoder

    jpegs = cifar_jpegs()
    photos = tmp_path / "photos"
    files = write_class_folders(photos, jpegs.per_class(3), jpegs.classes)
    first = sorted(files)[0]
    shutil.copy(photos / first, photos / Path(first).parent / "copy-of-first.jpg")
    (photos / Path(first).parent / "empty.png").write_bytes(b"")
    out = tmp_path / "embeddings"
    metrics = _run(model_dir=pretrained_run, data_dir=str(photos), output_dir=str(out))
    assert metrics["num_images"] == 30 and list(metrics["splits"]) == ["train"]
    got = emb.read_embeddings(str(out), "train")
    assert sorted(got.paths) == sorted(files)  # the copy and the empty file are not rows
    assert [files[p] for p in got.paths] == got.labels.tolist()
    model, _ = load_encoder(pretrained_run)
    pixels = np.stack([np.asarray(Image.open(photos / p)) for p in got.paths])
    want = l2_normalize(model.predict(pixels, verbose=0))
    np.testing.assert_allclose(got.embeddings, want, atol=1e-4)


def test_non_finite_embeddings_publish_nothing(real_prepared_data, tmp_path):
    import keras
    from simclr.errors import UserError
    from simclr.model import build_encoder, save_encoder

    keras.utils.set_random_seed(0)
    encoder = build_encoder("resnet18", 0.125)
    kernel = encoder.get_layer("stem_conv").kernel
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    save_encoder(encoder, str(tmp_path / "nan"), config={})
    with pytest.raises(UserError, match="non-finite (embeddings|weights)"):
        _run(
            model_dir=str(tmp_path / "nan"),
            data_dir=real_prepared_data,
            output_dir=str(tmp_path / "o"),
        )
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data_dir={tmp}/nothing"], "no manifest"),
        (["--splits=validation"], "no split validation"),
        (["--model_dir={tmp}"], "no encoder"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(
    args, message, pretrained_run, real_prepared_data, tmp_path
):
    base = {
        "model_dir": pretrained_run,
        "data_dir": real_prepared_data,
        "output_dir": str(tmp_path / "out"),
    }
    for arg in args:
        key, value = arg[2:].split("=", 1)
        base[key] = value.format(tmp=tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "simclr.tasks.embed", *(f"--{k}={v}" for k, v in base.items())],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, done.stderr[-2000:]
    assert not (tmp_path / "out").exists()


def test_sharded_writer_splits_batches_across_shards(tmp_path):
    writer = emb.ShardedWriter(str(tmp_path), "train", 10, 4, {"split": "train"})
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(10, 3)).astype(np.float32)
    for lo, hi in ((0, 3), (3, 9), (9, 10)):
        writer.add(np.arange(lo, hi), vectors[lo:hi], np.arange(lo, hi) - 2, None)
    assert writer.close() == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    got = emb.read_embeddings(str(tmp_path), "train")
    np.testing.assert_array_equal(got.ids, np.arange(10))
    np.testing.assert_array_equal(got.embeddings, vectors)
    assert got.labels.tolist() == [-1, -1] + list(range(8))  # negative labels stored as null
    assert got.paths == [None] * 10
