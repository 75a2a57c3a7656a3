"""The embed step: after pretraining, the training set's embeddings as Parquet shards.

Compiled: behind `dsl.If(run_embed == True)`, fed pretrain's model and prepare-data's
dataset, sized like evaluation on both platforms. Run: the component body through KFP's
executor (tests/component_runner.py, what the pod runs) on real CIFAR-10 and a real
export; the Model artifact's metadata read from the SavedModel's config.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from simclr_pipeline import adapters, cli, presets

from tests.component_runner import artifact

REPO = Path(__file__).resolve().parents[1]


def compile_spec(tmp_path: Path, *flags: str) -> dict:
    out = tmp_path / "p.yaml"
    assert cli.main(["compile", f"--output={out}", *flags]) == 0
    return next(yaml.safe_load_all(out.read_text()))


def _embed_task(spec: dict) -> tuple[dict, dict]:
    """(the condition task in the root DAG, the embed task inside it)."""
    condition = spec["root"]["dag"]["tasks"]["condition-1"]
    inner = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]
    assert set(inner) == {"embed"}
    return condition, inner["embed"]


@pytest.mark.parametrize("platform", ["kubeflow", "vertex"])
def test_embed_runs_after_pretrain_behind_run_embed(platform, tmp_path):
    spec = compile_spec(tmp_path, f"--platform={platform}")
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["run_embed"] == {
        "defaultValue": True,
        "isOptional": True,
        "parameterType": "BOOLEAN",
    }
    assert params["embed_options"]["parameterType"] == "STRUCT"
    assert presets.GPU["run_embed"] is True
    condition, embed = _embed_task(spec)
    assert condition["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--run_embed'] == true"
    )
    assert set(condition["dependentTasks"]) == {"pretrain", "prepare-data"}
    arts = condition["inputs"]["artifacts"]
    assert arts["pipelinechannel--pretrain-model"]["taskOutputArtifact"] == {
        "outputArtifactKey": "model",
        "producerTask": "pretrain",
    }
    assert arts["pipelinechannel--prepare-data-dataset"]["taskOutputArtifact"] == {
        "outputArtifactKey": "dataset",
        "producerTask": "prepare-data",
    }
    assert embed["inputs"]["parameters"]["splits"]["runtimeValue"]["constant"] == "train"
    assert embed["cachingOptions"] == {}  # not cached, as evaluation
    outputs = spec["components"]["comp-embed"]["outputDefinitions"]["artifacts"]
    assert {k: v["artifactType"]["schemaTitle"] for k, v in outputs.items()} == {
        "embeddings": "system.Dataset",
        "embed_metrics": "system.Metrics",
    }


@pytest.mark.parametrize(
    "flags",
    [
        ["--platform=kubeflow"],
        ["--platform=vertex"],
        ["--platform=kubeflow", "--accelerator_type=none"],
        ["--platform=vertex", "--accelerator_type=none"],
    ],
)
def test_embed_gets_evaluations_resources_and_image(flags, tmp_path):
    spec = compile_spec(tmp_path, *flags)
    executors = spec["deploymentSpec"]["executors"]
    embed, evaluate = executors["exec-embed"]["container"], executors["exec-evaluate"]["container"]
    assert embed["resources"] == evaluate["resources"]
    assert embed["image"] == evaluate["image"]
    assert ("accelerator" in embed["resources"]) == ("--accelerator_type=none" not in flags)


def test_run_embed_false_is_accepted_by_the_cli_params():
    from simclr_pipeline.pipeline import build_pipeline, pipeline_parameters

    types = pipeline_parameters(build_pipeline())
    assert types["run_embed"] == "BOOLEAN" and types["embed_options"] == "STRUCT"


@pytest.fixture(scope="module")
def exported_model(tmp_path_factory) -> Path:
    """A pretrain-shaped model artifact directory: encoder/encoder.keras + saved_model/."""
    import keras
    from simclr.export import export_saved_model
    from simclr.model import build_encoder, save_encoder

    keras.utils.set_random_seed(0)
    encoder = build_encoder("resnet18", 0.125)
    model_dir = tmp_path_factory.mktemp("model") / "model"
    config = {"pretrain": {"encoder": "resnet18", "width_multiplier": 0.125}}
    save_encoder(encoder, str(model_dir / "encoder"), config=config)
    export_saved_model(encoder, config, str(model_dir / "encoder"))
    return model_dir


def test_model_metadata_comes_from_the_saved_models_config(exported_model):
    from kfp.dsl import Model

    model = Model(name="model", uri=str(exported_model))
    meta = adapters.saved_model_metadata(model)
    config = json.loads((exported_model / "encoder/saved_model/config.json").read_text())
    assert meta["image_size"] == config["image_size"] == 32
    assert meta["stem"] == "cifar" and meta["encoder"] == "resnet18"
    assert meta["embedding_size"] == config["embedding_size"] == 64
    assert meta["saved_model"] == "encoder/saved_model"
    assert meta["saved_model_uri"] == str(exported_model / "encoder" / "saved_model")
    on_gcs = Model(name="model", uri="gs://b/root/run/pretrain/model")
    assert adapters.saved_model_uri(on_gcs) == "gs://b/root/run/pretrain/model/encoder/saved_model"
    on_kfp_store = Model(name="model", uri="minio://mlpipeline/v2/artifacts/run/pretrain/model")
    assert adapters.saved_model_uri(on_kfp_store) == (
        "s3://mlpipeline/v2/artifacts/run/pretrain/model/encoder/saved_model"
    )


def _run_component(tmp_path: Path, executor_input: dict, function: str):
    path = tmp_path / f"{function}_input.json"
    path.write_text(json.dumps(executor_input))
    return subprocess.run(
        [sys.executable, str(REPO / "tests" / "component_runner.py"), str(path), function],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )


def _embed_input(data_dir: str, model_dir: Path, out: Path, options: dict) -> dict:
    return {
        "inputs": {
            "artifacts": {
                "dataset": artifact(data_dir, "system.Dataset"),
                "model": artifact(str(model_dir), "system.Model"),
            },
            "parameterValues": {"splits": "train", "options": options},
        },
        "outputs": {
            "artifacts": {
                "embeddings": artifact(str(out / "embeddings"), "system.Dataset"),
                "embed_metrics": artifact(str(out / "embed_metrics"), "system.Metrics"),
            },
            "outputFile": str(out / "executor_output.json"),
        },
    }


def test_embed_component_writes_the_training_set(real_prepared_data, exported_model, tmp_path):
    from simclr.embeddings import read_embeddings

    manifest = json.loads((Path(real_prepared_data) / "manifest.json").read_text())
    num_train = manifest["splits"]["train"]["num_examples"]
    options = {"rows_per_shard": 2000, "batch_size": 500}
    done = _run_component(
        tmp_path, _embed_input(real_prepared_data, exported_model, tmp_path, options), "embed"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads((tmp_path / "executor_output.json").read_text())["artifacts"]
    meta = out["embeddings"]["artifacts"][0]["metadata"]
    assert meta["format"] == "parquet" and meta["splits"] == ["train"]
    assert meta["num_images"] == num_train and meta["embedding_dim"] == 64
    assert len(meta["files"]) == -(-num_train // 2000)  # the rows_per_shard option arrived
    ui = out["embed_metrics"]["artifacts"][0]["metadata"]
    assert ui["images_per_second"] > 0 and ui["num_images"] == num_train
    table = read_embeddings(str(tmp_path / "embeddings"), split="train")
    assert list(table.ids) == list(range(num_train))
    assert table.embeddings.shape == (num_train, 64) and np.isfinite(table.embeddings).all()
    counts = np.bincount(table.labels, minlength=10)
    assert counts.tolist() == manifest["splits"]["train"]["class_counts"]


def test_embed_component_bad_option_is_one_line(real_prepared_data, exported_model, tmp_path):
    done = _run_component(
        tmp_path,
        _embed_input(real_prepared_data, exported_model, tmp_path, {"batch_sise": 8}),
        "embed",
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: EmbedConfig has no field")
    assert not (tmp_path / "executor_output.json").exists()
