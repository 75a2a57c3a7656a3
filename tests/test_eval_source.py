"""prepare_data --eval_source (issue 16 item 4): pretrain on unlabelled pictures, evaluate
on a separate labelled source. Real CIFAR-10 JPEG files: a flat folder (no labels) as
the training source, other images of the same archive in class folders as the
evaluation source; through the prepare_data and evaluate CLIs, as users run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_data import prepare_data_cli
from tests.fixtures_images import cifar_jpegs, write_class_folders, write_flat_folder

ROOT = Path(__file__).resolve().parents[1]
NUM_TRAIN, EVAL_PER_CLASS = 600, 40


def _sources(root: Path) -> tuple[Path, Path]:
    """(flat folder of NUM_TRAIN images, class folders of other images)."""
    jpegs = cifar_jpegs()
    write_flat_folder(root / "photos", jpegs.files[:NUM_TRAIN])
    labelled = jpegs.per_class(EVAL_PER_CLASS, skip=NUM_TRAIN)
    write_class_folders(root / "labelled", labelled, jpegs.classes)
    return root / "photos", root / "labelled"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval_source")
    photos, labelled = _sources(root)
    out = root / "data"
    proc = prepare_data_cli(
        f"--source={photos}",
        f"--eval_source={labelled}",
        f"--output_dir={out}",
        "--test_fraction=0.25",
        "--label_fractions=0.5",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_training_source_keeps_every_image_and_eval_source_gets_its_own_splits(prepared):
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["labelled"] is False and manifest["label_subsets"] == {}
    assert set(manifest["splits"]) == {"train"}  # no test split carved from --source
    assert manifest["splits"]["train"]["num_examples"] == NUM_TRAIN
    entry = manifest["evaluation"]
    evaluation = json.loads((prepared / entry["data_dir"] / "manifest.json").read_text())
    assert evaluation["labelled"] is True and evaluation["class_names"] == entry["class_names"]
    assert entry["class_names"] == sorted(cifar_jpegs().classes)
    assert (entry["num_train"], entry["num_test"]) == (300, 100)  # 25% held out, stratified
    assert evaluation["splits"]["test"]["class_counts"] == [10] * 10
    assert set(evaluation["label_subsets"]) == {"0.5"}
    assert evaluation["image_size"] == manifest["image_size"] == 32
    assert evaluation["source"]["uri"].endswith("labelled") == entry["source"].endswith("labelled")


def _evaluate(data_dir: Path, model_dir: str, out: Path) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "simclr.tasks.evaluate",
        f"--data_dir={data_dir}",
        f"--model_dir={model_dir}",
        f"--output_dir={out}",
        "--protocols=knn,linear",
        "--baseline=none",
        "--embedding=pca",
        "--gallery=false",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "components"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_evaluate_scores_on_the_eval_source(prepared, pretrained_run, tmp_path):
    proc = _evaluate(prepared, pretrained_run, tmp_path / "eval")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "evaluating on" in proc.stderr and "no labels" not in proc.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["labelled"] is True and metrics["settings"]["protocols_skipped"] == []
    assert (metrics["num_train"], metrics["num_test"]) == (300, 100)
    assert metrics["data_dir"] == str(prepared / "eval")
    # The same figures as evaluating the eval dataset directly: it is what was scored.
    direct = _evaluate(prepared / "eval", pretrained_run, tmp_path / "direct")
    assert direct.returncode == 0, direct.stderr[-3000:]
    again = json.loads((tmp_path / "direct" / "metrics.json").read_text())
    assert again["knn_top1"] == metrics["knn_top1"]
    assert again["linear_top1"] == metrics["linear_top1"]


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[-1]


def test_unlabelled_eval_source_is_refused_before_any_output(tmp_path):
    photos, _ = _sources(tmp_path)
    out = tmp_path / "data"
    line = _one_line_error(
        prepare_data_cli(f"--source={photos}", f"--eval_source={photos}", f"--output_dir={out}")
    )
    assert "--eval_source" in line and "has no labels" in line
    assert not out.exists()


def test_missing_eval_source_and_archive_source_are_one_line(tmp_path):
    photos, labelled = _sources(tmp_path)
    missing = _one_line_error(
        prepare_data_cli(
            f"--source={photos}",
            f"--eval_source={tmp_path / 'nowhere'}",
            f"--output_dir={tmp_path / 'a'}",
        )
    )
    assert missing.startswith("error: --eval_source") and "not found" in missing
    archive = _one_line_error(
        prepare_data_cli(
            f"--source={tmp_path / 'cifar-10-binary.tar.gz'}",
            f"--eval_source={labelled}",
            f"--output_dir={tmp_path / 'b'}",
        )
    )
    assert "--eval_source" in archive and "archive" in archive
    no_test = _one_line_error(
        prepare_data_cli(
            f"--source={photos}",
            f"--eval_source={labelled}",
            "--test_fraction=0",
            f"--output_dir={tmp_path / 'c'}",
        )
    )
    assert "--test_fraction" in no_test
    assert not any((tmp_path / d).exists() for d in ("a", "b", "c"))
