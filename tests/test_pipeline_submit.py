"""Submission: the requests handed to kfp.Client and aiplatform.PipelineJob, and the
one-line errors when a host, project or credentials are missing. No cluster needed."""

from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from simclr_pipeline import cli, params, submit

from tests.fixtures_gcs import free_port

NO_CLOUD_ENV = ("KFP_HOST", "KFP_NAMESPACE", "KFP_TOKEN", "VERTEX_PROJECT", "VERTEX_REGION")


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> str:
    # No GPU request: the one package is valid on both platforms.
    path = tmp_path_factory.mktemp("pkg") / "simclr_pipeline.yaml"
    # No Kubernetes settings either (--s3_secret=none: no KFP object-store Secret).
    flags = [
        "--image_repo=registry.example.com/ml/simclr",
        "--accelerator_type=none",
        "--s3_secret=none",
    ]
    assert cli.main(["compile", f"--output={path}", *flags]) == 0
    return str(path)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No cloud settings and no way to find Google credentials."""
    for name in (*NO_CLOUD_ENV, "PIPELINE_ROOT", "VERTEX_SERVICE_ACCOUNT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # skip the metadata-server probe
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("HOME", str(tmp_path))
    return monkeypatch


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


# --- choosing the target ----------------------------------------------------------------


def test_target_from_environment():
    env = {"KFP_HOST": "http://kfp.example.com"}
    assert submit.choose_target(submit.Settings.from_env(env)) == submit.KUBEFLOW
    env = {"VERTEX_PROJECT": "p", "VERTEX_REGION": "europe-west4", "PIPELINE_ROOT": "gs://b/r"}
    settings = submit.Settings.from_env(env)
    assert submit.choose_target(settings) == submit.VERTEX
    assert settings.region == "europe-west4"
    # flags win over the environment
    assert submit.Settings.from_env(env, project="other").project == "other"


@pytest.mark.parametrize(
    "settings, target, message",
    [
        (submit.Settings(), None, "set KFP_HOST"),
        (submit.Settings(project="p"), None, "VERTEX_REGION, PIPELINE_ROOT"),
        (submit.Settings(project="p", region="r", pipeline_root="/local"), None, "gs://"),
        (submit.Settings(host="h", project="p"), None, "--target"),
        (submit.Settings(project="p"), "kubeflow", "KFP_HOST"),
    ],
)
def test_target_errors(settings, target, message):
    with pytest.raises(submit.SubmitError, match=message):
        submit.choose_target(settings, target)


# --- Kubeflow -----------------------------------------------------------------------------


class FakeClient:
    created: list = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def create_run_from_pipeline_package(self, **request):
        FakeClient.created.append((self.kwargs, request))

        class Result:
            run_id = "run-123"

        return Result()


def test_kubeflow_request(package):
    arguments = params.coerce_parameters(
        {"epochs": "5", "encoder": "resnet18", "pretrain_options": '{"warmup_epochs": 1}'},
        params.package_parameter_types(package),
    )
    assert arguments == {
        "epochs": 5,
        "encoder": "resnet18",
        "pretrain_options": {"warmup_epochs": 1},
    }
    request = submit.kubeflow_request(
        package,
        arguments,
        experiment_name="simclr",
        run_name="try-1",
        enable_caching=None,
        namespace="team-a",
    )
    settings = submit.Settings(host="https://kfp.example.com", namespace="team-a")
    client_kwargs = submit.kubeflow_client_kwargs(settings, env={"KFP_TOKEN": "tok"})
    assert client_kwargs == {
        "host": "https://kfp.example.com",
        "namespace": "team-a",
        "existing_token": "tok",
    }
    FakeClient.created.clear()
    assert submit.submit_kubeflow(client_kwargs, request, client_factory=FakeClient) == "run-123"
    ((used_kwargs, used_request),) = FakeClient.created
    assert used_request == {
        "pipeline_file": package,
        "arguments": {"epochs": 5, "encoder": "resnet18", "pretrain_options": {"warmup_epochs": 1}},
        "experiment_name": "simclr",
        "run_name": "try-1",
        "enable_caching": None,  # keep the compiled per-task caching
        "namespace": "team-a",
    }


def test_kubeflow_unreachable_host_is_one_line(package, clean_env, capsys):
    clean_env.setenv("KFP_HOST", f"http://127.0.0.1:{free_port()}")
    code = cli.main(["submit", f"--package={package}", "--param=epochs=1"])
    assert code == 2
    assert "Kubeflow Pipelines at http://127.0.0.1" in one_line_error(capsys)


# --- Vertex AI ----------------------------------------------------------------------------


def test_vertex_pipeline_job(package):
    settings = submit.Settings(
        project="my-proj", region="us-central1", pipeline_root="gs://bkt/root"
    )
    arguments = params.coerce_parameters(
        {"epochs": 3, "width_multiplier": "0.5", "tensorboard_root": "gs://bkt/tb"},
        params.package_parameter_types(package),
    )
    kwargs = submit.vertex_job_kwargs(
        package, arguments, settings, display_name="simclr-test", enable_caching=False
    )
    assert kwargs["project"] == "my-proj" and kwargs["location"] == "us-central1"
    job = submit.make_vertex_job(kwargs, credentials=AnonymousCredentials())
    resource = job.to_dict()
    assert resource["displayName"] == "simclr-test"
    runtime = resource["runtimeConfig"]
    assert runtime["gcsOutputDirectory"] == "gs://bkt/root"
    assert runtime["parameterValues"] == {
        "epochs": 3,
        "width_multiplier": 0.5,
        "tensorboard_root": "gs://bkt/tb",
    }
    assert resource["labels"] == {"app": "simclr-kfp"}
    tasks = resource["pipelineSpec"]["root"]["dag"]["tasks"]
    # embed runs inside dsl.If(run_embed == True): KFP compiles that to a condition task
    assert set(tasks) == {"prepare-data", "augment", "pretrain", "evaluate", "condition-1"}
    # enable_caching=False overrides the compiled per-task settings
    assert not any(t.get("cachingOptions", {}).get("enableCache") for t in tasks.values())
    assert job._gca_resource.runtime_config.gcs_output_directory == "gs://bkt/root"
    assert job.project == "my-proj" and job.location == "us-central1"


def test_vertex_keeps_compiled_caching_by_default(package):
    settings = submit.Settings(project="p", region="us-central1", pipeline_root="gs://b/r")
    kwargs = submit.vertex_job_kwargs(package, {}, settings, display_name=None, enable_caching=None)
    job = submit.make_vertex_job(kwargs, credentials=AnonymousCredentials())
    tasks = job.to_dict()["pipelineSpec"]["root"]["dag"]["tasks"]
    assert tasks["prepare-data"]["cachingOptions"]["enableCache"] is True
    assert not tasks["pretrain"]["cachingOptions"].get("enableCache", False)


def test_vertex_missing_credentials_is_one_line(package, clean_env, capsys):
    clean_env.setenv("VERTEX_PROJECT", "p")
    clean_env.setenv("VERTEX_REGION", "us-central1")
    clean_env.setenv("PIPELINE_ROOT", "gs://b/r")
    assert cli.main(["submit", f"--package={package}"]) == 2
    assert "no Google Cloud credentials" in one_line_error(capsys)


def test_vertex_broken_credentials_say_what_failed(package, clean_env, capsys, tmp_path):
    key = tmp_path / "key.json"
    key.write_text("{not a key")
    clean_env.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    clean_env.setenv("VERTEX_PROJECT", "p")
    clean_env.setenv("VERTEX_REGION", "us-central1")
    clean_env.setenv("PIPELINE_ROOT", "gs://b/r")
    assert cli.main(["submit", f"--package={package}"]) == 2
    err = one_line_error(capsys)
    assert "no Google Cloud credentials found" not in err
    assert "could not be loaded" in err and str(key) in err


class RecordingPipelineService:
    """Stands in for Vertex AI's PipelineService client: keeps the request it was sent."""

    def __init__(self):
        self.requests = []

    def create_pipeline_job(self, parent, pipeline_job, pipeline_job_id, **kwargs):
        self.requests.append(pipeline_job)
        created = type(pipeline_job)()
        type(pipeline_job).copy_from(created, pipeline_job)
        created.name = f"{parent}/pipelineJobs/{pipeline_job_id}"
        return created


def test_vertex_submit_sends_service_account_and_network(package, gcs_bucket):
    # aiplatform creates the pipeline root's bucket if missing: the GCS emulator's bucket.
    settings = submit.Settings.from_env(
        {"VERTEX_PROJECT": "p", "VERTEX_REGION": "us-central1", "PIPELINE_ROOT": f"{gcs_bucket}/r"},
        service_account="sa@p.iam.gserviceaccount.com",
        network="projects/123/global/networks/vpc",
    )
    kwargs = submit.vertex_job_kwargs(package, {}, settings, display_name=None, enable_caching=None)
    job = submit.make_vertex_job(kwargs, credentials=AnonymousCredentials())
    service = RecordingPipelineService()
    job.api_client = service
    submit.submit_vertex(job, settings.service_account, settings.network)
    (sent,) = service.requests
    # Multi-worker pretraining's custom job gets these through Vertex AI's placeholders
    # (tests/test_pipeline.py checks the compiled job uses them).
    assert sent.service_account == "sa@p.iam.gserviceaccount.com"
    assert sent.network == "projects/123/global/networks/vpc"


# --- CLI errors before anything is sent ----------------------------------------------------


def test_submit_without_target_is_one_line(package, clean_env, capsys):
    assert cli.main(["submit", f"--package={package}"]) == 2
    assert "set KFP_HOST" in one_line_error(capsys)


def test_submit_vertex_missing_region_is_one_line(package, clean_env, capsys):
    clean_env.setenv("VERTEX_PROJECT", "p")
    assert cli.main(["submit", f"--package={package}"]) == 2
    assert "VERTEX_REGION" in one_line_error(capsys)


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--param=epochz=3", "unknown pipeline parameter(s) epochz"),
        ("--param=epochs=three", "epochs must be an integer"),
        ("--param=noequals", "key=value"),
    ],
)
def test_bad_parameters_are_one_line(package, clean_env, capsys, flag, message):
    clean_env.setenv("KFP_HOST", "http://unused")
    assert cli.main(["submit", f"--package={package}", flag]) == 2
    assert message in one_line_error(capsys)


def test_missing_package_is_one_line(tmp_path, clean_env, capsys):
    clean_env.setenv("KFP_HOST", "http://unused")
    assert cli.main(["submit", f"--package={tmp_path / 'nope.yaml'}"]) == 2
    assert "cannot read pipeline package" in one_line_error(capsys)


def test_params_file_and_preset(package, tmp_path: Path):
    file = tmp_path / "p.json"
    file.write_text('{"epochs": 7, "encoder": "resnet34"}')
    merged = params.merge_parameters({"epochs": 1, "batch_size": 64}, str(file), ["epochs=9"])
    assert merged == {"epochs": "9", "encoder": "resnet34", "batch_size": 64}
    typed = params.coerce_parameters(merged, params.package_parameter_types(package))
    assert typed == {"epochs": 9, "encoder": "resnet34", "batch_size": 64}
