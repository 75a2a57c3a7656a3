"""--vertex_model_display_name: the SavedModel lands in the Vertex AI Model Registry.

Checked against google-cloud-pipeline-components 2.22.0 (the [vertex] extra, pinned in
constraints.txt) itself, not a copy of its rules:
- `google_cloud_pipeline_components/v1/model/upload_model/component.py` (ModelUploadOp):
  our compiled model-upload component is GCPC's own spec, its input fed by a
  `dsl.importer` of `types/artifact_types.py` UnmanagedContainerModel (the way that
  component's docstring documents);
- `container/v1/model/upload_model/launcher.py` + `remote_runner.py`: the container's
  real code, run on the executor input our compiled YAML gives it (placeholders resolved
  by kfp.local's placeholder_utils, Vertex's own ones by hand), with only the HTTP call to
  Vertex AI replaced: the models:upload request carries our SavedModel's URI and the TF
  prediction container.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from simclr_pipeline import cli, platforms

from tests.component_runner import artifact

REPO = Path(__file__).resolve().parents[1]
NAME = "SimCLR encoder (cifar-10)"
MODEL_URI = "gs://bucket/root/simclr-cifar10-123/pretrain/model"


def compile_vertex(tmp_path: Path, *flags: str) -> tuple[dict, str]:
    out = tmp_path / "p.yaml"
    assert cli.main(["compile", f"--output={out}", "--platform=vertex", *flags]) == 0
    text = out.read_text()
    return next(yaml.safe_load_all(text)), text


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    return compile_vertex(tmp_path_factory.mktemp("vx"), f"--vertex_model_display_name={NAME}")[0]


def _gcpc_spec():
    """GCPC's ModelUploadOp compiled alone: its component and executor."""
    from google.protobuf import json_format
    from google_cloud_pipeline_components.v1.model import ModelUploadOp

    own = json_format.MessageToDict(ModelUploadOp.pipeline_spec)
    return own["components"]["comp-model-upload"], own["deploymentSpec"]["executors"][
        "exec-model-upload"
    ]


def test_upload_is_gcpcs_model_upload_fed_by_an_importer(spec):
    from google_cloud_pipeline_components import _placeholders
    from google_cloud_pipeline_components.types.artifact_types import UnmanagedContainerModel

    tasks = spec["root"]["dag"]["tasks"]
    assert {"saved-model-uri", "importer", "model-upload"} <= set(tasks)
    gcpc_component, gcpc_executor = _gcpc_spec()
    assert spec["components"]["comp-model-upload"] == gcpc_component
    assert spec["deploymentSpec"]["executors"]["exec-model-upload"] == gcpc_executor

    importer = spec["deploymentSpec"]["executors"]["exec-importer"]["importer"]
    schema = importer["typeSchema"]
    assert schema["schemaTitle"] == UnmanagedContainerModel.schema_title
    assert schema["schemaVersion"] == UnmanagedContainerModel.schema_version
    wanted_input = gcpc_component["inputDefinitions"]["artifacts"]["unmanaged_container_model"]
    assert wanted_input["artifactType"]["schemaTitle"] == schema["schemaTitle"]
    image = importer["metadata"]["containerSpec"]["imageUri"]
    assert image == platforms.VERTEX_TF_SERVING_IMAGE
    # The URI: the output of our saved-model-uri step, through the importer's `uri` input.
    assert importer["artifactUri"] == {"runtimeParameter": "uri"}
    uri_input = tasks["importer"]["inputs"]["parameters"]["uri"]["taskOutputParameter"]
    assert uri_input == {"outputParameterKey": "Output", "producerTask": "saved-model-uri"}
    upload = tasks["model-upload"]["inputs"]
    art = upload["artifacts"]["unmanaged_container_model"]["taskOutputArtifact"]
    assert art == {"outputArtifactKey": "artifact", "producerTask": "importer"}
    params = upload["parameters"]
    assert params["display_name"]["runtimeValue"]["constant"] == NAME
    assert params["location"]["runtimeValue"]["constant"] == _placeholders.LOCATION_PLACEHOLDER
    model_in = tasks["saved-model-uri"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
    assert model_in == {"outputArtifactKey": "model", "producerTask": "pretrain"}


def _saved_model_uri_output(tmp_path: Path) -> str:
    """Our saved-model-uri component run by KFP's executor, as in the pod."""
    executor_input = {
        "inputs": {"artifacts": {"model": artifact(MODEL_URI, "system.Model")}},
        "outputs": {
            "parameters": {"Output": {"outputFile": str(tmp_path / "Output")}},
            "outputFile": str(tmp_path / "executor_output.json"),
        },
    }
    path = tmp_path / "uri_input.json"
    path.write_text(json.dumps(executor_input))
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "component_runner.py"), str(path)]
        + ["saved_model_uri"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads((tmp_path / "executor_output.json").read_text())
    return out["parameterValues"]["Output"]


def test_gcpc_launcher_sends_our_saved_model_and_tf_container(spec, tmp_path, monkeypatch):
    from google_cloud_pipeline_components.container.v1.gcp_launcher import lro_remote_runner
    from google_cloud_pipeline_components.container.v1.model.upload_model import launcher
    from kfp.local import placeholder_utils

    uri = _saved_model_uri_output(tmp_path)
    assert uri == f"{MODEL_URI}/encoder/saved_model"
    importer = spec["deploymentSpec"]["executors"]["exec-importer"]["importer"]
    component = spec["components"]["comp-model-upload"]["inputDefinitions"]["parameters"]
    task_params = spec["root"]["dag"]["tasks"]["model-upload"]["inputs"]["parameters"]
    values = {k: v["defaultValue"] for k, v in component.items() if "defaultValue" in v}
    values.update({k: v["runtimeValue"]["constant"] for k, v in task_params.items()})
    # What Vertex AI resolves in a PipelineJob (GCPC _placeholders).
    vertex = {
        "{{$.pipeline_google_cloud_location}}": "europe-west4",
        "{{$.pipeline_google_cloud_project_id}}": "my-project",
    }
    values = {k: vertex.get(v, v) if isinstance(v, str) else v for k, v in values.items()}
    gcp_resources = tmp_path / "gcp_resources"
    executor_input = {
        "inputs": {
            "parameterValues": values,
            "artifacts": {
                "unmanaged_container_model": {
                    "artifacts": [
                        {
                            "name": "artifact",
                            "uri": uri,  # what the importer makes of its `uri` input
                            "type": {"schemaTitle": importer["typeSchema"]["schemaTitle"]},
                            "metadata": importer["metadata"],
                        }
                    ]
                }
            },
        },
        "outputs": {
            "parameters": {"gcp_resources": {"outputFile": str(gcp_resources)}},
            "artifacts": {"model": artifact("gs://bucket/root/upload/model", "google.VertexModel")},
            "outputFile": str(tmp_path / "upload_output.json"),
        },
    }
    container = spec["deploymentSpec"]["executors"]["exec-model-upload"]["container"]
    args = placeholder_utils.replace_placeholders(
        container["command"] + container["args"],
        executor_input,
        pipeline_resource_name="simclr-cifar10-123",
        task_resource_name="model-upload",
        pipeline_root="gs://bucket/root",
        unique_pipeline_id="123",
    )
    for key, value in vertex.items():
        args = [a.replace(key, value) for a in args]
    module = args.index("-m") + 1
    assert (
        args[module] == "google_cloud_pipeline_components.container.v1.model.upload_model.launcher"
    )

    sent = {}

    def create_lro(self, url, request, gcp_resources_path, http_method="post"):
        sent.update(url=url, request=json.loads(request), location=self.location)
        return {"name": "projects/my-project/locations/europe-west4/operations/1"}

    def poll_lro(self, lro):
        model = "projects/my-project/locations/europe-west4/models/42"
        return {"response": {"model": model, "modelVersionId": "1"}}

    monkeypatch.setattr(lro_remote_runner.LroRemoteRunner, "__init__", _fake_init)
    monkeypatch.setattr(lro_remote_runner.LroRemoteRunner, "create_lro", create_lro)
    monkeypatch.setattr(lro_remote_runner.LroRemoteRunner, "poll_lro", poll_lro)
    launcher.main(args[module + 1 :])

    assert sent["url"] == (
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/my-project/"
        "locations/europe-west4/models:upload"
    )
    model = sent["request"]["model"]
    assert model["display_name"] == NAME
    assert model["artifact_uri"] == f"{MODEL_URI}/encoder/saved_model"
    assert model["container_spec"] == {"image_uri": platforms.VERTEX_TF_SERVING_IMAGE}
    assert "serving_default" in model["description"]
    out = json.loads((tmp_path / "upload_output.json").read_text())
    uploaded = out["artifacts"]["model"]["artifacts"][0]
    assert uploaded["metadata"]["resourceName"].endswith("models/42@1")


def _fake_init(self, location):
    self.location = location  # no Google credentials here: nothing to authenticate


def test_no_flag_no_upload(tmp_path):
    spec, text = compile_vertex(tmp_path)
    tasks = set(spec["root"]["dag"]["tasks"])
    assert not {"saved-model-uri", "importer", "model-upload"} & tasks
    assert "UnmanagedContainerModel" not in text


@pytest.mark.parametrize(
    "flags",
    [
        ["--platform=kubeflow", f"--vertex_model_display_name={NAME}"],
        ["--platform=vertex", f"--vertex_model_display_name={'x' * 129}"],
        ["--platform=vertex", '--vertex_model_display_name=a "quoted" name'],
        ["--platform=vertex", "--vertex_model_display_name= "],
        [
            "--platform=vertex",
            "--vertex_model_display_name=m",
            "--vertex_serving_image=tensorflow/serving:latest",
        ],
    ],
)
def test_bad_upload_settings_are_one_line(flags, tmp_path, capsys):
    assert cli.main(["compile", f"--output={tmp_path}/q.yaml", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --vertex_"), err
    assert not (tmp_path / "q.yaml").exists()
