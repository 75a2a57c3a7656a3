"""simclr.evaluate / simclr.tasks.evaluate on a tiny encoder and tiny_prepared_data."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from simclr import eval_inputs, evaluation_run, report
from simclr import evaluate as ev
from simclr.tasks import evaluate as task

ROOT = Path(__file__).resolve().parents[1]
LABEL_FREE = ("alignment", "uniformity", "effective_rank", "view_retrieval_top1")
METRIC_KEYS = {
    "knn_top1",
    "knn_top5",
    "linear_top1",
    "linear_top5",
    "finetune_top1_0.01",
    "finetune_top1_0.1",
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_encoder_dir(tmp_path_factory) -> str:
    """A pretrain-like output dir: DIR/encoder/{encoder.keras,config.json}, DIR/metrics.json."""
    import keras
    from simclr.model import build_encoder, save_encoder

    root = tmp_path_factory.mktemp("tiny_model")
    keras.utils.set_random_seed(7)
    encoder = build_encoder("resnet18", 0.125)
    save_encoder(
        encoder, str(root / "encoder"), config={"encoder": "resnet18", "width_multiplier": 0.125}
    )
    (root / "metrics.json").write_text(json.dumps({"steps": 42, "final_loss": 1.0}))
    return str(root)


def _tree_hash(directory: str) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(directory).rglob("*"))
        if p.is_file()
    }


def _weights(model) -> dict[str, np.ndarray]:
    return {v.path: np.array(v.numpy()) for v in model.weights}


def _tiny_data(data_dir: str) -> ev.EvalData:
    from simclr import data

    manifest = data.load_manifest(data_dir)
    subsets = {k: data.load_arrays(data_dir, f"label_{k}") for k in ("0.01", "0.1")}
    return ev.EvalData(
        manifest["class_names"],
        *data.load_arrays(data_dir, "train"),
        *data.load_arrays(data_dir, "test"),
        subsets,
    )


# --------------------------------------------------------------------------- pure functions


def test_knn_votes_are_exp_cosine_over_temperature():
    train = np.array([[1.0, 0.0], [2.0, 0.2], [0.0, 3.0]], np.float32)  # norms differ on purpose
    labels = np.array([0, 0, 1])
    test = np.array([[1.0, 0.1]], np.float32)
    sims = ev.l2_normalize(test) @ ev.l2_normalize(train).T
    scores = ev.knn_scores(train, labels, test, 2, k=3, temperature=0.1)
    np.testing.assert_allclose(
        scores[0],
        [np.exp(sims[0, 0] / 0.1) + np.exp(sims[0, 1] / 0.1), np.exp(sims[0, 2] / 0.1)],
        rtol=1e-5,
    )
    only_nearest = ev.knn_scores(train, labels, test, 2, k=2, temperature=0.1)
    assert only_nearest[0, 1] == 0 and only_nearest[0, 0] > 0


def test_knn_chunking_does_not_change_scores():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(300, 16)), rng.normal(size=(50, 16))
    labels = rng.integers(0, 10, 300)
    whole = ev.knn_scores(train, labels, test, 10, k=20, chunk_size=1000)
    chunked = ev.knn_scores(train, labels, test, 10, k=20, chunk_size=7)
    np.testing.assert_allclose(whole, chunked, rtol=1e-5)


def test_topk_confusion_and_per_class_accuracy():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    labels = np.array([1, 1, 2, 2])
    assert ev.topk_accuracy(scores, labels, 1) == 0.5
    assert ev.topk_accuracy(scores, labels, 2) == 0.75
    assert ev.topk_accuracy(scores, labels, 5) == 1.0  # k capped at the class count
    matrix = ev.confusion_matrix(labels, scores.argmax(1), 3)
    assert matrix.tolist() == [[0, 0, 0], [1, 1, 0], [1, 0, 1]]
    assert ev.per_class_accuracy(matrix) == [None, 0.5, 0.5]


def test_linear_probe_picks_c_on_held_out_data_and_separates_blobs():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=3.0, size=(4, 32))
    y_train, y_test = rng.integers(0, 4, 400), rng.integers(0, 4, 200)
    x_train = centers[y_train] + rng.normal(size=(400, 32))
    x_test = centers[y_test] + rng.normal(size=(200, 32))
    probe = ev.linear_probe(x_train, y_train, x_test, c_grid=(0.001, 0.1, 10.0))
    assert set(probe.validation_top1) == {0.001, 0.1, 10.0}
    assert probe.c == max(probe.validation_top1, key=lambda c: (probe.validation_top1[c], -c))
    assert probe.scores.shape == (200, 4)
    np.testing.assert_allclose(probe.scores.sum(1), 1.0, rtol=1e-5)
    assert ev.topk_accuracy(probe.scores, y_test, 1) > 0.95


def test_crop_flip_is_a_seeded_per_image_crop_of_the_padded_image():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    out = ev.crop_flip(images, (3, 4)).numpy()
    assert out.dtype == np.uint8 and out.shape == images.shape
    np.testing.assert_array_equal(out, ev.crop_flip(images, (3, 4)).numpy())
    assert not np.array_equal(out, ev.crop_flip(images, (3, 5)).numpy())
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")
    for i in range(len(images)):
        crops = [padded[i, dy : dy + 32, dx : dx + 32] for dy in range(9) for dx in range(9)]
        assert any(np.array_equal(out[i], c) or np.array_equal(out[i], c[:, ::-1]) for c in crops)


# --------------------------------------------------------------------------- protocols


def test_frozen_protocols_change_no_weight_or_batchnorm_statistic(
    tiny_prepared_data, tiny_encoder_dir
):
    from simclr.model import load_encoder

    model, _ = load_encoder(tiny_encoder_dir)
    before = _weights(model)
    assert any("moving_mean" in name for name in before)
    assert any("moving_variance" in name for name in before)
    options = ev.EvalOptions(linear_augment_copies=1, linear_c_grid=(0.01, 1.0))

    def no_copies():
        raise AssertionError("knn/linear must use the frozen model given")

    result = ev.evaluate_encoder(
        no_copies, _tiny_data(tiny_prepared_data), ["knn", "linear"], options, frozen_model=model
    )
    after = _weights(model)
    assert before.keys() == after.keys()
    for name in before:
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)
    assert set(result.metrics) == {"knn_top1", "knn_top5", "linear_top1", "linear_top5"}
    for key, value in result.metrics.items():
        assert 0.0 <= value <= 1.0, key
    assert result.metrics["knn_top5"] >= result.metrics["knn_top1"]
    assert result.metrics["linear_top5"] >= result.metrics["linear_top1"]
    assert result.test_features.shape == (100, 64)
    assert result.details["linear_c"] in (0.01, 1.0)


def test_finetune_trains_fresh_copies_and_never_the_saved_encoder(
    tiny_prepared_data, tiny_encoder_dir
):
    from simclr.model import load_encoder

    disk_before = _tree_hash(tiny_encoder_dir)
    model, _ = load_encoder(tiny_encoder_dir)
    source = _weights(model)
    copies = []
    make_copy = evaluation_run.pretrained_factory(model)

    def factory():
        copy = make_copy()
        copy_weights = _weights(copy)
        assert copy is not model and len(copy_weights) == len(source)
        for a, b in zip(source.values(), copy_weights.values(), strict=True):
            np.testing.assert_array_equal(a, b)  # starts from the pretrained weights
        copies.append(copy)
        return copy

    options = ev.EvalOptions(finetune_epochs=1, finetune_batch_size=8)
    result = ev.evaluate_encoder(
        factory, _tiny_data(tiny_prepared_data), ["finetune"], options, label_fractions=["0.1"]
    )
    assert set(result.metrics) == {"finetune_top1_0.1"}
    assert 0.0 <= result.metrics["finetune_top1_0.1"] <= 1.0
    assert len(copies) == 1
    trained = _weights(copies[0])
    assert any(
        not np.array_equal(source[a], trained[b]) for a, b in zip(source, trained, strict=True)
    )
    for name, value in _weights(model).items():
        np.testing.assert_array_equal(value, source[name], err_msg=name)
    assert _tree_hash(tiny_encoder_dir) == disk_before


# --------------------------------------------------------------------------- the task


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.size


def _event_scalars(logdir: Path, plugin: str = "scalars") -> dict:
    """tag -> value (scalars) or -> decoded uint8 image (plugin "images")."""
    import tensorflow as tf

    out = {}
    for event_file in logdir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != plugin:
                    continue
                tensor = tf.make_ndarray(value.tensor)
                # images: [width, height, encoded PNG...] strings
                out[value.tag] = (
                    float(tensor) if plugin == "scalars" else tf.io.decode_png(tensor[2]).numpy()
                )
                assert event.step == 42  # the pretraining step from DIR/metrics.json
    return out


def test_run_writes_metrics_confusion_report_plots_and_tensorboard(
    tiny_prepared_data, tiny_encoder_dir, tmp_path
):
    from simclr import data

    out, tb = tmp_path / "eval", tmp_path / "tb"
    config = task.EvaluateConfig(
        data_dir=tiny_prepared_data,
        model_dir=tiny_encoder_dir,
        output_dir=str(out),
        tensorboard_dir=str(tb),
        finetune_epochs=1,
        embedding="tsne",
    )
    metrics = task.run(config)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert sorted(os.listdir(out)) == sorted(
        [
            "metrics.json",
            "confusion_matrix.json",
            "confusion_matrix.png",
            "embedding.png",
            "report.md",
            "gallery.html",
        ]
    )
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []  # no staging left

    # The default baseline runs the frozen-feature protocols only (cheap), and is measured
    # label-free like the encoder.
    assert METRIC_KEYS | set(LABEL_FREE) <= set(metrics) and metrics["labelled"] is True
    assert set(metrics["baseline"]) == {"knn_top1", "knn_top5", "linear_top1", "linear_top5"} | set(
        LABEL_FREE
    )
    assert metrics["settings"]["label_free_num_images"] == 100
    assert metrics["settings"]["protocols_skipped"] == []
    for key in METRIC_KEYS:
        assert 0.0 <= metrics[key] <= 1.0 and 0.0 <= metrics["baseline"].get(key, 0) <= 1.0
    assert metrics["num_train"] == 200 and metrics["num_test"] == 100
    assert metrics["encoder"] == {
        "encoder": "resnet18",
        "width_multiplier": 0.125,
        "feature_dim": 64,
    }
    assert metrics["pretrain_steps"] == 42

    confusion = json.loads((out / "confusion_matrix.json").read_text())
    _, test_labels = data.load_arrays(tiny_prepared_data, "test")
    matrix = np.array(confusion["matrix"])
    assert confusion["protocol"] == "linear"
    assert confusion["class_names"] == data.load_manifest(tiny_prepared_data)["class_names"]
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(test_labels, minlength=10))
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["linear_top1"])
    np.testing.assert_allclose(confusion["per_class_accuracy"], np.diag(matrix) / matrix.sum(1))

    text = (out / "report.md").read_text()
    assert "94.0%" in text and "ResNet-50" in text and "Random init" in text
    assert f"{100 * metrics['knn_top1']:.2f}%" in text
    assert f"{100 * metrics['baseline']['linear_top1']:.2f}%" in text
    assert "Fine-tune top-1 (1% labels)" in text and "Fine-tune top-1 (10% labels)" in text
    assert "(embedding.png)" in text and "(confusion_matrix.png)" in text
    for name in confusion["class_names"]:
        assert f"| {name} |" in text

    assert _png_size(out / "confusion_matrix.png") == report.CONFUSION_PNG_SIZE
    assert _png_size(out / "embedding.png") == report.EMBEDDING_PNG_SIZE

    scalars = _event_scalars(tb / "eval")
    assert scalars["eval/knn_top1"] == pytest.approx(metrics["knn_top1"])
    assert scalars["eval/baseline/linear_top1"] == pytest.approx(metrics["baseline"]["linear_top1"])
    assert scalars["eval/finetune_top1_0.1"] == pytest.approx(metrics["finetune_top1_0.1"])
    for key in LABEL_FREE:
        assert scalars[f"eval/{key}"] == pytest.approx(metrics[key])
        assert scalars[f"eval/baseline/{key}"] == pytest.approx(metrics["baseline"][key])
    assert "## Label-free quality" in text and "(gallery.html)" in text
    images = _event_scalars(tb / "eval", "images")
    assert set(images) == {
        f"eval/{kind}/{name}"
        for kind in ("gallery", "map")
        for name in ("pretrained", "random_init")
    }
    assert images["eval/gallery/pretrained"].shape == (16 * 34, 9 * 34 + 2, 3)  # 16 x (1 + 8)


def test_run_knn_only_with_limits_on_gcs(
    tiny_prepared_data, tiny_encoder_dir, gcs_bucket, tmp_path, monkeypatch
):
    from simclr import storage

    monkeypatch.setenv("SIMCLR_CACHE_DIR", str(tmp_path / "cache"))
    data_uri = storage.join(gcs_bucket, "data")
    model_uri = storage.join(gcs_bucket, "run", "encoder")  # the encoder/ dir itself
    storage.upload_dir(tiny_prepared_data, data_uri)
    storage.upload_dir(os.path.join(tiny_encoder_dir, "encoder"), model_uri)
    out_uri = storage.join(gcs_bucket, "eval")
    config = task.EvaluateConfig(
        data_dir=data_uri,
        model_dir=model_uri,
        output_dir=out_uri,
        tensorboard_dir=storage.join(gcs_bucket, "tb"),
        protocols="knn",
        baseline="none",
        max_train_examples=50,
        max_test_examples=30,
        embedding="pca",
    )
    metrics = task.run(config)
    assert storage.read_json(storage.join(out_uri, "metrics.json")) == metrics
    protocols_run = {k for k in metrics if k.endswith(("_top1", "_top5")) and k not in LABEL_FREE}
    assert protocols_run == {"knn_top1", "knn_top5"}
    assert set(LABEL_FREE) <= set(metrics)
    assert "baseline" not in metrics and "pretrain_steps" not in metrics
    assert metrics["num_train"] == 50 and metrics["num_test"] == 30
    confusion = storage.read_json(storage.join(out_uri, "confusion_matrix.json"))
    assert confusion["protocol"] == "knn" and np.sum(confusion["matrix"]) == 30
    assert any(
        f.startswith("eval/events.out.tfevents")
        for f in storage.list_files(storage.join(gcs_bucket, "tb"))
    )
    assert "gallery.html" in storage.list_files(out_uri)


# --------------------------------------------------------------------------- bad input


def _bad_labels_copy(data_dir: str, root: Path) -> str:
    """A copy of data_dir whose test split has a label 12 (outside the 10 classes)."""
    import shutil

    from simclr import data

    target = root / "bad_labels"
    shutil.copytree(data_dir, target)
    path = data.record_files(str(target), "test")[0]
    images, labels = data.read_record_file(path)
    labels[3] = 12
    sha256 = data.write_records(path, images, labels)["sha256"]
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["splits"]["test"]["shards"][0]["sha256"] = sha256  # intact, but a bad label
    (target / "manifest.json").write_text(json.dumps(manifest))
    return str(target)


def test_max_examples_takes_a_seeded_random_subset_not_the_first(tiny_prepared_data, tmp_path):
    import shutil

    from simclr import data

    sorted_dir = tmp_path / "sorted"  # a test split stored grouped by class
    shutil.copytree(tiny_prepared_data, sorted_dir)
    x, y = data.load_arrays(str(sorted_dir), "test")
    files = data.record_files(str(sorted_dir), "test")
    order = np.argsort(y, kind="stable")
    manifest = json.loads((sorted_dir / "manifest.json").read_text())
    shards = manifest["splits"]["test"]["shards"]
    for path, part, shard in zip(files, np.array_split(order, len(files)), shards, strict=True):
        shard["sha256"] = data.write_records(path, x[part], y[part])["sha256"]  # the new bytes
    (sorted_dir / "manifest.json").write_text(json.dumps(manifest))
    assert data.load_arrays(str(sorted_dir), "test", 30)[1].max() < 4  # first 30: 3 classes

    def subset(seed):
        config = task.EvaluateConfig(
            data_dir=str(sorted_dir), model_dir="", output_dir="", seed=seed
        )
        return eval_inputs.load_split(config, "test", 30, 10)

    images, labels = subset(0)
    assert len(labels) == 30 and len(np.unique(labels)) >= 8
    np.testing.assert_array_equal(subset(0)[0], images)  # deterministic
    assert not np.array_equal(subset(1)[1], labels)


@pytest.mark.parametrize("case", ["no_encoder", "no_manifest", "bad_labels", "unknown_protocol"])
def test_bad_input_is_one_line_error(case, tiny_prepared_data, tiny_encoder_dir, tmp_path):
    args = {"data_dir": tiny_prepared_data, "model_dir": tiny_encoder_dir, "protocols": "knn"}
    expected = {
        "no_encoder": "no encoder",
        "no_manifest": "manifest",
        "bad_labels": "labels outside [0, 10)",
        "unknown_protocol": "--protocols",
    }[case]
    if case == "no_encoder":
        (tmp_path / "empty_model").mkdir()
        args["model_dir"] = str(tmp_path / "empty_model")
    elif case == "no_manifest":
        (tmp_path / "empty_data").mkdir()
        args["data_dir"] = str(tmp_path / "empty_data")
    elif case == "bad_labels":
        args["data_dir"] = _bad_labels_copy(tiny_prepared_data, tmp_path)
    else:
        args["protocols"] = "knn,svm"
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "simclr.tasks.evaluate",
        f"--output_dir={out}",
        "--baseline=none",
        *(f"--{k}={v}" for k, v in args.items()),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "components"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and expected in error_lines[0], proc.stderr
    assert not (out / "metrics.json").exists()


def test_cli_runs_and_writes_metrics(tiny_prepared_data, tiny_encoder_dir, tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "simclr.tasks.evaluate",
        f"--data_dir={tiny_prepared_data}",
        f"--model_dir={tiny_encoder_dir}/encoder",
        f"--output_dir={out}",
        "--protocols=knn,linear",
        "--linear_c_grid=0.1",
        "--embedding=pca",
        "--max_train_examples=0",
        "--max_test_examples=40",
        "--seed=3",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "components"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_train"] == 200 and metrics["num_test"] == 40
    assert set(metrics["baseline"]) == {"knn_top1", "knn_top5", "linear_top1", "linear_top5"} | set(
        LABEL_FREE
    )
    assert metrics["settings"]["linear_c"] == 0.1 and metrics["settings"]["seed"] == 3
    assert metrics["pretrain_steps"] == 42  # found in the run dir above encoder/
