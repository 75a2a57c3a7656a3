"""The whole pipeline under kfp.local's SubprocessRunner on a small real CIFAR-10 subset.

Runs `python -m simclr_pipeline.cli run-local --preset=test` in a subprocess (as
`make demo` does, only smaller) and checks the artifacts where the pipeline says
they are. Pretraining gets just enough work (2,000 images, 8 epochs: 125 steps, about
a minute of CPU) for its encoder to beat the random-init baseline, as the demo shows.
"""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO.parent / "shared" / "tools" / "cifar10_tarball.py"
NUM_TRAIN, NUM_TEST = 2000, 500
# On top of the test preset: enough pretraining to learn something.
PARAMS = {
    "max_train_examples": NUM_TRAIN,
    "epochs": 8,
    "batch_size": 128,
    "learning_rate": 1.0,
    "eval_max_train_examples": NUM_TRAIN,  # all of them: a smaller bank makes the probe noisy
}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("e2e")
    subprocess.run(
        [sys.executable, str(TOOL), "--out", str(work), "--train", str(NUM_TRAIN)]
        + ["--test", str(NUM_TEST)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    archive = work / "cifar-10-binary.tar.gz"
    root = work / "run"
    env = {**os.environ, "SIMCLR_CACHE_DIR": str(work / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "simclr_pipeline.cli",
            "run-local",
            "--preset=test",
            f"--root={root}",
            f"--source={archive}",
            *(f"--param={key}={value}" for key, value in PARAMS.items()),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-5000:])
    summary = json.loads((root / "summary.json").read_text())
    run_dirs = glob.glob(str(root / "pipeline_root" / "simclr-cifar10-*"))
    assert len(run_dirs) == 1
    return {"stdout": result.stdout, "summary": summary, "root": root, "run": Path(run_dirs[0])}


def executor_output(run: Path, task: str) -> dict:
    return json.loads((run / task / "executor_output.json").read_text())


def artifact_metadata(run: Path, task: str, name: str) -> dict:
    return executor_output(run, task)["artifacts"][name]["artifacts"][0]["metadata"]


def test_summary_is_printed(local_run):
    out = local_run["stdout"]
    assert "SimCLR pipeline finished" in out
    assert "pretrained" in out and "baseline" in out
    assert f"make tensorboard LOGDIR={local_run['summary']['paths']['tensorboard']}" in out


def test_prepared_data(local_run):
    manifest = json.loads(
        (local_run["run"] / "prepare-data" / "dataset" / "manifest.json").read_text()
    )
    assert manifest["splits"]["train"]["num_examples"] == NUM_TRAIN
    assert manifest["splits"]["test"]["num_examples"] == NUM_TEST
    assert artifact_metadata(local_run["run"], "prepare-data", "dataset")["num_train"] == NUM_TRAIN


def test_augment_outputs(local_run):
    policy_dir = local_run["run"] / "augment" / "policy"
    assert json.loads((policy_dir / "policy.json").read_text())
    assert (policy_dir / "preview.png").read_bytes().startswith(b"\x89PNG")
    preview = (local_run["run"] / "augment" / "preview").read_text()
    assert "data:image/png;base64," in preview
    assert (
        artifact_metadata(local_run["run"], "augment", "augment_metrics")["images_per_second"] > 0
    )


def test_pretrain_outputs(local_run):
    summary, run = local_run["summary"], local_run["run"]
    model_dir = Path(summary["paths"]["model"])
    assert model_dir == run / "pretrain" / "model"
    metrics = artifact_metadata(run, "pretrain", "pretrain_metrics")
    assert metrics["steps"] >= 1 and metrics["images_per_second"] > 0
    assert np.isfinite(metrics["final_loss"])
    # Beside the model, not inside it (evaluate downloads the model): where a retry resumes.
    assert any((model_dir.parent / "checkpoints").iterdir())
    assert not (model_dir / "checkpoints").exists()
    logdir = Path(summary["paths"]["tensorboard"])
    assert logdir.parent == local_run["root"] / "tensorboard"
    assert glob.glob(str(logdir / "**" / "events.out.tfevents.*"), recursive=True)
    markdown = (run / "pretrain" / "tensorboard").read_text()
    assert f"make tensorboard LOGDIR={logdir}" in markdown


def test_encoder_loads(local_run):
    from simclr.model import load_encoder

    encoder, config = load_encoder(local_run["summary"]["paths"]["encoder"])
    features = np.asarray(encoder(np.zeros((2, 32, 32, 3), np.uint8)))
    assert features.shape == (2, config["feature_dim"])
    assert np.isfinite(features).all()


def test_evaluation_outputs(local_run):
    summary, run = local_run["summary"], local_run["run"]
    evaluation = summary["evaluation"]
    for name in ("knn_top1", "linear_top1"):
        assert 0.0 <= evaluation[name] <= 1.0
        assert 0.0 <= evaluation["baseline"][name] <= 1.0
        # The point of pretraining: its encoder beats the random-init one on both protocols
        # (measured here: kNN 0.252 vs 0.218, linear 0.340 vs 0.274 on the 500 test images).
        assert evaluation[name] > evaluation["baseline"][name] + 0.01, (name, evaluation)
    print("e2e evaluation:", json.dumps(evaluation))
    ui_metrics = artifact_metadata(run, "evaluate", "eval_metrics")
    assert ui_metrics["knn_top1"] == evaluation["knn_top1"]
    assert ui_metrics["baseline_linear_top1"] == evaluation["baseline"]["linear_top1"]
    assert not any(k.startswith("settings_") for k in ui_metrics)
    matrix = artifact_metadata(run, "evaluate", "confusion_matrix")["confusionMatrix"]
    assert len(matrix["annotationSpecs"]) == 10
    assert sum(sum(r["row"]) for r in matrix["rows"]) == NUM_TEST  # every test image once
    report = (run / "evaluate" / "report").read_text()
    assert report.startswith("#") and "data:image/png;base64," in report
    assert "data:image/png;base64," in (run / "evaluate" / "plots").read_text()
    # The retrieval gallery is an HTML artifact of its own, the page evaluate wrote.
    gallery = (run / "evaluate" / "gallery").read_text()
    assert gallery == (run / "evaluate" / "evaluation" / "gallery.html").read_text()
    assert gallery.count("data:image/png;base64,") > 16


def test_model_artifact_carries_the_saved_model_facts(local_run):
    run = local_run["run"]
    meta = artifact_metadata(run, "pretrain", "model")
    saved = run / "pretrain" / "model" / meta["saved_model"]
    config = json.loads((saved / "config.json").read_text())
    assert (saved / "saved_model.pb").is_file()
    assert meta["saved_model_uri"] == str(saved)
    for key in ("image_size", "stem", "encoder", "embedding_size", "width_multiplier"):
        assert meta[key] == config[key], key
    assert (meta["image_size"], meta["stem"], meta["embedding_size"]) == (32, "cifar", 64)


def test_embed_step_writes_the_training_set_as_parquet(local_run):
    from simclr.embeddings import read_embeddings

    run = local_run["run"]
    outputs = glob.glob(str(run / "**" / "embed" / "executor_output.json"), recursive=True)
    assert len(outputs) == 1, sorted(p.name for p in run.iterdir())
    task_dir = Path(outputs[0]).parent
    meta = json.loads(Path(outputs[0]).read_text())["artifacts"]["embeddings"]["artifacts"][0]
    assert meta["metadata"]["format"] == "parquet" and meta["metadata"]["splits"] == ["train"]
    assert meta["metadata"]["num_images"] == NUM_TRAIN
    table = read_embeddings(str(task_dir / "embeddings"), split="train")
    assert len(table.ids) == NUM_TRAIN and list(table.ids) == list(range(NUM_TRAIN))
    assert table.embeddings.shape == (NUM_TRAIN, 64) and np.isfinite(table.embeddings).all()
    np.testing.assert_allclose(np.linalg.norm(table.embeddings, axis=1), 1.0, atol=1e-4)
    ui = json.loads(Path(outputs[0]).read_text())["artifacts"]["embed_metrics"]
    assert ui["artifacts"][0]["metadata"]["images_per_second"] > 0
