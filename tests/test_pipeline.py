"""The compiled pipeline YAML: tasks, artifact types, resources, caching, images.

Nothing here runs a pipeline; `test_pipeline_e2e.py` does.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from simclr_pipeline import cli

from tests.test_import_boundary import BLOCKER

REPO = Path(__file__).resolve().parents[1]
# condition-1: dsl.If(run_embed) around the embed step (tests/test_pipeline_embed.py).
TASKS = {"prepare-data", "augment", "pretrain", "evaluate", "condition-1"}
STEPS = {"prepare-data", "augment", "pretrain", "evaluate", "embed"}  # their executors


def compile_yaml(tmp_path: Path, *flags: str, name: str = "p.yaml") -> tuple[dict, dict, str]:
    """Compiles through the CLI; returns (pipeline spec, platform spec or {}, raw text)."""
    output = tmp_path / name
    assert cli.main(["compile", f"--output={output}", *flags]) == 0
    text = output.read_text()
    docs = list(yaml.safe_load_all(text))
    return docs[0], (docs[1] if len(docs) > 1 else {}), text


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[dict, dict, str]:
    return compile_yaml(
        tmp_path_factory.mktemp("compile"),
        "--image_repo=registry.example.com/ml/simclr",
        "--image_tag=1.2.3",
    )


def executor(spec: dict, task: str) -> dict:
    return spec["deploymentSpec"]["executors"][f"exec-{task}"]


def test_four_tasks_in_order(compiled):
    spec, _, _ = compiled
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == TASKS
    assert "dependentTasks" not in tasks["prepare-data"]
    assert tasks["augment"]["dependentTasks"] == ["prepare-data"]
    assert set(tasks["pretrain"]["dependentTasks"]) == {"prepare-data", "augment"}
    assert "pretrain" in tasks["evaluate"]["dependentTasks"]


def test_artifact_types(compiled):
    spec, _, _ = compiled

    def outputs(component: str) -> dict[str, str]:
        arts = spec["components"][f"comp-{component}"]["outputDefinitions"]["artifacts"]
        return {name: a["artifactType"]["schemaTitle"] for name, a in arts.items()}

    assert outputs("prepare-data") == {"dataset": "system.Dataset"}
    assert outputs("augment") == {
        "policy": "system.Artifact",
        "preview": "system.HTML",
        "augment_metrics": "system.Metrics",
    }
    assert outputs("pretrain") == {
        "model": "system.Model",
        "pretrain_metrics": "system.Metrics",
        "tensorboard": "system.Markdown",
    }
    assert outputs("evaluate") == {
        "evaluation": "system.Artifact",
        "eval_metrics": "system.Metrics",
        "confusion_matrix": "system.ClassificationMetrics",
        "report": "system.Markdown",
        "plots": "system.HTML",
        "gallery": "system.HTML",
    }
    # The TensorBoard pointer and the results are pipeline outputs (shown on the run page).
    pipeline_outputs = spec["root"]["outputDefinitions"]["artifacts"]
    assert {"model", "tensorboard", "eval_metrics", "report"} <= set(pipeline_outputs)


def test_gpu_request_and_retry_on_pretrain(compiled):
    spec, platform, _ = compiled
    resources = executor(spec, "pretrain")["container"]["resources"]
    # The default platform is Kubeflow: a Kubernetes resource name (tests/test_platforms.py
    # checks it against Kubernetes' rules).
    assert "/" in resources["accelerator"]["resourceType"]
    assert "num_gpus" in resources["accelerator"]["resourceCount"]  # the pipeline parameter
    assert resources["resourceCpuRequest"] == "6"  # fits an 8-vCPU node (test_platforms.py)
    assert resources["resourceMemoryRequest"] == "24G"
    retry = spec["root"]["dag"]["tasks"]["pretrain"]["retryPolicy"]
    assert retry["maxRetryCount"] == 3
    for task in ("prepare-data", "augment"):
        assert "accelerator" not in executor(spec, task)["container"].get("resources", {})
    for task in ("prepare-data", "augment", "evaluate"):
        assert "retryPolicy" not in spec["root"]["dag"]["tasks"][task]
    # Evaluate gets one GPU of the same kind (fine-tuning a ResNet-50 on CPU takes hours).
    evaluate = executor(spec, "evaluate")["container"]["resources"]["accelerator"]
    assert evaluate["resourceType"] == resources["accelerator"]["resourceType"]
    assert evaluate["resourceCount"] == "1"
    # Kubernetes settings: only KFP's object-store Secret (the default pipeline root needs it).
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for config in executors.values():
        assert [s["secretName"] for s in config["secretAsEnv"]] == ["mlpipeline-minio-artifact"]


def test_caching_settings(compiled):
    spec, _, _ = compiled
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["prepare-data"]["cachingOptions"] == {"enableCache": True}
    assert tasks["augment"]["cachingOptions"] == {"enableCache": True}
    assert not tasks["pretrain"]["cachingOptions"].get("enableCache", False)
    assert not tasks["evaluate"]["cachingOptions"].get("enableCache", False)


def test_images_and_nothing_installed_at_run_time(compiled):
    spec, _, text = compiled
    images = {t: executor(spec, t)["container"]["image"] for t in STEPS}
    assert images == {
        "prepare-data": "registry.example.com/ml/simclr/cpu:1.2.3",
        "augment": "registry.example.com/ml/simclr/cpu:1.2.3",
        "evaluate": "registry.example.com/ml/simclr/gpu:1.2.3",  # it gets a GPU
        "pretrain": "registry.example.com/ml/simclr/gpu:1.2.3",
        "embed": "registry.example.com/ml/simclr/gpu:1.2.3",  # as evaluate
    }
    assert "pip install" not in text and "pip3 install" not in text
    assert "packages_to_install" not in text
    for task in STEPS:
        # The component runs our installed adapters, not code pasted into the YAML.
        assert "from simclr_pipeline import adapters" in "".join(
            executor(spec, task)["container"]["command"]
        )


def test_pipeline_parameters(compiled):
    spec, _, _ = compiled
    params = spec["root"]["inputDefinitions"]["parameters"]
    expected = {
        "source": "STRING",
        "encoder": "STRING",
        "width_multiplier": "NUMBER_DOUBLE",
        "epochs": "NUMBER_INTEGER",
        "batch_size": "NUMBER_INTEGER",
        "learning_rate": "NUMBER_DOUBLE",
        "temperature": "NUMBER_DOUBLE",
        "max_train_examples": "NUMBER_INTEGER",
        "precision": "STRING",
        "num_gpus": "NUMBER_INTEGER",
        "tensorboard_root": "STRING",
        "checkpoint_root": "STRING",
        "pretrain_options": "STRUCT",
    }
    assert {k: params[k]["parameterType"] for k in expected} == expected
    assert params["source"]["defaultValue"].startswith("https://")
    assert params["encoder"]["defaultValue"] == "resnet50"
    # pretrain gets the run id, so TensorBoard logs and checkpoints go to <root>/<run id>.
    run_id = spec["root"]["dag"]["tasks"]["pretrain"]["inputs"]["parameters"]["run_id"]
    assert run_id["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"


def test_kubernetes_placement_is_for_pretrain_only(tmp_path):
    _, platform, _ = compile_yaml(
        tmp_path,
        "--node_selector=cloud.google.com/gke-accelerator=nvidia-tesla-a100",
        "--toleration=nvidia.com/gpu:NoSchedule",
        "--toleration=dedicated=ml:NoExecute",
    )
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    placed = {n for n, c in executors.items() if "nodeSelector" in c or "tolerations" in c}
    assert placed == {"exec-pretrain", "exec-evaluate", "exec-embed"}  # the GPU steps
    pretrain = executors["exec-pretrain"]
    assert pretrain["nodeSelector"]["labels"] == {
        "cloud.google.com/gke-accelerator": "nvidia-tesla-a100"
    }
    assert pretrain["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute"},
    ]


def test_no_accelerator_option(tmp_path):
    spec, _, _ = compile_yaml(tmp_path, "--accelerator_type=none", "--retries=1")
    assert "accelerator" not in executor(spec, "pretrain")["container"]["resources"]
    evaluate = executor(spec, "evaluate")["container"]
    assert "accelerator" not in evaluate["resources"] and "/cpu:" in evaluate["image"]
    assert spec["root"]["dag"]["tasks"]["pretrain"]["retryPolicy"]["maxRetryCount"] == 1


def test_vertex_multi_worker_custom_job(tmp_path):
    spec, _, text = compile_yaml(
        tmp_path,
        "--platform=vertex",
        "--vertex_workers=4",
        "--vertex_machine_type=a2-highgpu-2g",
        "--vertex_accelerator_count=2",
        "--image_repo=us-docker.pkg.dev/p/r/simclr",
        "--image_tag=7",
    )
    assert set(spec["root"]["dag"]["tasks"]) == TASKS
    comp = spec["components"]["comp-pretrain"]
    pools = comp["inputDefinitions"]["parameters"]["worker_pool_specs"]["defaultValue"]
    assert len(pools) == 2  # chief + workers
    assert [int(p["replica_count"]) for p in pools] == [1, 3]
    for pool in pools:
        assert pool["container_spec"]["image_uri"] == "us-docker.pkg.dev/p/r/simclr/gpu:7"
        assert pool["machine_spec"]["machine_type"] == "a2-highgpu-2g"
        assert pool["machine_spec"]["accelerator_type"] == "NVIDIA_TESLA_A100"
        assert int(pool["machine_spec"]["accelerator_count"]) == 2
    assert "google-cloud-pipeline-components" in text or "CustomJob" in text
    # The submitter's service account and network reach the custom job: Vertex AI
    # resolves GCPC's placeholders from the PipelineJob at run time.
    from google_cloud_pipeline_components import _placeholders

    inputs = comp["inputDefinitions"]["parameters"]
    assert inputs["service_account"]["defaultValue"] == _placeholders.SERVICE_ACCOUNT_PLACEHOLDER
    assert inputs["network"]["defaultValue"] == _placeholders.NETWORK_PLACEHOLDER
    assert spec["root"]["dag"]["tasks"]["pretrain"]["retryPolicy"]["maxRetryCount"] == 3
    # The wrapped component keeps its outputs, so evaluate still gets the model.
    outputs = comp["outputDefinitions"]["artifacts"]
    assert {"model", "pretrain_metrics", "tensorboard"} <= set(outputs)


# The TensorFlow blocker of tests/test_import_boundary.py, then a compile.
_BLOCK_TF = BLOCKER + textwrap.dedent(
    """
    from simclr_pipeline import cli
    code = cli.main(sys.argv[1:])
    assert not any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules), "TF imported"
    sys.exit(code)
    """
)


def _compile_in_subprocess(output: Path, hash_seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    result = subprocess.run(
        [sys.executable, "-c", _BLOCK_TF, "compile", f"--output={output}", "--image_tag=t"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_compile_without_tensorflow_is_deterministic(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    _compile_in_subprocess(first, "1")
    _compile_in_subprocess(second, "2")
    assert first.read_bytes() == second.read_bytes()
