"""evaluate on image datasets (simclr.images), above all without labels (issue 16 item
4): a flat folder of real CIFAR-10 JPEG files ingested by simclr.images (manifest
``"labelled": false``, labels -1), evaluated with the session's pretrained run
(tests/fixtures_train.py) through the CLI: one line names the protocols that need
labels, they are skipped, the label-free figures and the gallery are reported, exit 0.
And the same pictures in class folders: every protocol runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from simclr import data, eval_inputs
from simclr.errors import UserError
from simclr.images import IngestOptions, ingest_images
from simclr.tasks import evaluate as task

from tests.fixtures_images import cifar_jpegs, write_class_folders, write_flat_folder

ROOT = Path(__file__).resolve().parents[1]
LABEL_FREE = ("alignment", "uniformity", "effective_rank", "view_retrieval_top1")


def _ingest(root: Path, count: int, **options) -> str:
    write_flat_folder(root / "photos", cifar_jpegs().files[:count])
    manifest = ingest_images(
        str(root / "photos"), str(root / "data"), IngestOptions(workers=2, **options)
    )
    assert manifest["labelled"] is False and manifest["class_names"] == []
    return str(root / "data")


@pytest.fixture(scope="module")
def unlabelled_data(tmp_path_factory) -> str:
    """1,500 real images: 1,200 train, 300 test (ingest's --test_fraction)."""
    return _ingest(tmp_path_factory.mktemp("unlabelled"), 1500, image_size=32, test_fraction=0.2)


def test_cli_skips_the_label_protocols_and_reports_label_free_figures(
    unlabelled_data, pretrained_run, tmp_path
):
    out = tmp_path / "eval"
    cmd = [
        sys.executable,
        "-m",
        "simclr.tasks.evaluate",
        f"--data_dir={unlabelled_data}",
        f"--model_dir={pretrained_run}",
        f"--output_dir={out}",
        "--embedding=pca",
    ]  # the default protocols: knn,linear,finetune
    env = {**os.environ, "PYTHONPATH": str(ROOT / "components"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = [line for line in proc.stderr.splitlines() if "no labels" in line]
    assert len(said) == 1 and "kNN, linear probe, fine-tuning" in said[0], proc.stderr[-3000:]
    assert not [
        line for line in proc.stderr.splitlines() if line.startswith(("error:", "Traceback"))
    ]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labelled"] is False
    assert metrics["settings"]["protocols_skipped"] == ["knn", "linear", "finetune"]
    assert metrics["settings"]["protocols_run"] == []
    assert metrics["num_train"] == 1200 and metrics["num_test"] == 300
    assert not [k for k in metrics if k.startswith(("knn", "linear", "finetune"))]
    assert set(metrics["baseline"]) == set(LABEL_FREE)
    base = metrics["baseline"]
    summary = {k: (metrics[k], base[k]) for k in LABEL_FREE}
    print(summary)
    # the pretrained encoder separates from its random init without any label
    assert metrics["uniformity"] < base["uniformity"] - 0.3, summary
    assert metrics["effective_rank"] > 2 * base["effective_rank"], summary
    assert metrics["view_retrieval_top1"] > base["view_retrieval_top1"], summary

    assert sorted(os.listdir(out)) == ["embedding.png", "gallery.html", "metrics.json", "report.md"]
    page = (out / "gallery.html").read_text()
    assert (
        page.count('<img class="query"') == 2 * 16
        and page.count('<img class="neighbour"') == 2 * 16 * 8
    )
    assert " data-same-label=" not in page and "Neighbours with their query" not in page
    assert metrics["settings"]["gallery"]["queries"] == 16
    assert "label_agreement_pretrained" not in metrics["settings"]["gallery"]
    report = (out / "report.md").read_text()
    assert "need labels and were skipped" in report and "## Label-free quality" in report
    assert f"{metrics['effective_rank']:.1f}" in report


def test_without_a_test_split_queries_are_held_out_of_train(pretrained_run, tmp_path):
    data_dir = _ingest(tmp_path, 300, image_size=32, test_fraction=0)
    out = tmp_path / "eval"
    metrics = task.run(
        task.EvaluateConfig(
            data_dir=data_dir,
            model_dir=pretrained_run,
            output_dir=str(out),
            baseline="none",
            embedding="pca",
        )
    )
    assert metrics["num_test"] == 30 and metrics["num_train"] == 270  # a tenth held out
    assert "baseline" not in metrics and set(LABEL_FREE) <= set(metrics)
    assert metrics["settings"]["label_free_num_images"] == 30
    assert (out / "gallery.html").is_file()


def test_images_of_another_size_than_the_encoder_are_one_line_error(pretrained_run, tmp_path):
    data_dir = _ingest(tmp_path, 40, image_size=40, test_fraction=0.25)
    config = task.EvaluateConfig(
        data_dir=data_dir, model_dir=pretrained_run, output_dir=str(tmp_path / "eval")
    )
    with pytest.raises(UserError, match="holds 40x40 images, the encoder .* takes 32x32"):
        task.run(config)
    assert not (tmp_path / "eval").exists()


def test_labelled_image_dataset_runs_every_protocol_on_the_stored_pixels(pretrained_run, tmp_path):
    import hashlib
    import io

    import numpy as np
    from PIL import Image

    jpegs = cifar_jpegs()
    files = jpegs.per_class(30)
    write_class_folders(tmp_path / "photos", files, jpegs.classes)
    options = IngestOptions(image_size=32, workers=2, test_fraction=0.2, label_fractions=(0.1,))
    ingest_images(str(tmp_path / "photos"), str(tmp_path / "data"), options)
    config = task.EvaluateConfig(
        data_dir=str(tmp_path / "data"),
        model_dir=pretrained_run,
        output_dir=str(tmp_path / "eval"),
        baseline="none",
        finetune_epochs=1,
        embedding="pca",
    )
    manifest = data.load_manifest(config.data_dir)
    train, labels = eval_inputs.load_split(config, "train", None, 10, manifest)
    # 32 px pictures are stored losslessly (PNG) and not resized: the pixels evaluate
    # reads are the JPEG files' decoded pixels, with their folder's label
    decoded = {
        hashlib.sha256(
            np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).tobytes()
        ).hexdigest(): label
        for _, label, data in files
    }
    read = {
        hashlib.sha256(x.tobytes()).hexdigest(): int(y) for x, y in zip(train, labels, strict=True)
    }
    assert len(read) == 240 and all(decoded[h] == y for h, y in read.items())

    metrics = task.run(config)
    assert metrics["labelled"] is True and metrics["settings"]["protocols_skipped"] == []
    for key in ("knn_top1", "linear_top1", "finetune_top1_0.1", *LABEL_FREE):
        assert key in metrics
    assert metrics["num_train"] == 240 and metrics["num_test"] == 60
    assert (tmp_path / "eval" / "confusion_matrix.json").is_file()
    assert metrics["settings"]["gallery"]["label_agreement_pretrained"] >= 0
