"""Compiling for a platform: the YAML against each platform's own rules and sources.

- Kubeflow: the KFP backend's driver (backend/src/v2/driver/driver.go) writes the
  accelerator's `resourceType` (else `type`) verbatim as the pod's resource-limit name,
  so it must satisfy Kubernetes' IsExtendedResourceName (pkg/apis/core/helper/helpers.go),
  built on IsQualifiedName. The port in simclr_pipeline.platforms is checked here against
  Kubernetes' own test cases for those rules.
- Vertex AI: accelerator names must be members of google-cloud-aiplatform's
  `AcceleratorType` enum (read here from the installed package).
"""

import dataclasses
import subprocess
from pathlib import Path

import pytest
import yaml
from google.cloud.aiplatform_v1.types import AcceleratorType
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2
from simclr_pipeline import cli, platforms
from simclr_pipeline.platforms import KFP_MINIO_SECRET, S3_SECRET_KEYS

REPO = Path(__file__).resolve().parents[1]

# Kubernetes' own cases, staging/src/k8s.io/apimachinery/pkg/api/validate/content/kube_test.go
# (TestIsLabelKey, TestIsLabelValue; kubernetes/kubernetes at 2e0908106e44).
K8S_LABEL_KEY_OK = [
    "simple",
    "now-with-dashes",
    "1-starts-with-num",
    "1234",
    "simple/simple",
    "now-with-dashes/simple",
    "now-with-dashes/now-with-dashes",
    "now.with.dots/simple",
    "now-with.dashes-and.dots/simple",
    "1-num.2-num/3-num",
    "1234/5678",
    "1.2.3.4/5678",
    "Uppercase_Is_OK_123",
    "example.com/Uppercase_Is_OK_123",
    "requests.storage-foo",
    "a" * 63,
    "a" * 253 + "/" + "b" * 63,
]
K8S_LABEL_KEY_BAD = [
    "nospecialchars%^=@",
    "cantendwithadash-",
    "-cantstartwithadash-",
    "only/one/slash",
    "Example.com/abc",
    "example_com/abc",
    "example.com/",
    "/simple",
    "a" * 64,
    "a" * 254 + "/abc",
]
K8S_LABEL_VALUE_OK = ["simple", "now-with-dashes", "1-starts-with-num", "end-with-num-1", "1234"]
K8S_LABEL_VALUE_OK += ["a" * 63, ""]
K8S_LABEL_VALUE_BAD = [
    "nospecialchars%^=@",
    "Tama-nui-te-rā.is.Māori.sun",
    "\\backslashes\\are\\bad",
    "-starts-with-dash",
    "ends-with-dash-",
    ".starts.with.dot",
    "ends.with.dot.",
    "a" * 64,
]


@pytest.mark.parametrize("value", K8S_LABEL_KEY_OK)
def test_qualified_name_accepts_what_kubernetes_accepts(value):
    assert platforms.qualified_name_errors(value) == []


@pytest.mark.parametrize("value", K8S_LABEL_KEY_BAD)
def test_qualified_name_rejects_what_kubernetes_rejects(value):
    assert platforms.qualified_name_errors(value)


@pytest.mark.parametrize("value", K8S_LABEL_VALUE_OK)
def test_label_value_accepts_what_kubernetes_accepts(value):
    assert platforms.label_value_errors(value) == []


@pytest.mark.parametrize("value", K8S_LABEL_VALUE_BAD)
def test_label_value_rejects_what_kubernetes_rejects(value):
    assert platforms.label_value_errors(value)


@pytest.mark.parametrize(
    "name, extended",
    [
        # IsExtendedResourceName: not native (no '/' or in kubernetes.io/), no "requests."
        # prefix, and "requests." + name must be a qualified name.
        ("nvidia.com/gpu", True),
        ("amd.com/gpu", True),
        ("cloud-tpus.google.com/v3", True),
        ("NVIDIA_TESLA_A100", False),  # unprefixed = native: the pod would be rejected
        ("gpu", False),
        ("kubernetes.io/gpu", False),
        ("requests.example.com/gpu", False),
        ("Example.com/gpu", False),
        ("example.com/" + "g" * 64, False),
    ],
)
def test_extended_resource_names(name, extended):
    assert platforms.is_extended_resource_name(name) is extended


# --- the compiled YAMLs ------------------------------------------------------------------


def compile_docs(tmp_path: Path, *flags: str) -> tuple[dict, dict]:
    output = tmp_path / "p.yaml"
    assert cli.main(["compile", f"--output={output}", "--image_repo=r.example.com/x", *flags]) == 0
    docs = list(yaml.safe_load_all(output.read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def accelerator_limits(spec: dict) -> dict[str, str]:
    """Executor -> the resource name the KFP driver puts into the pod's limits."""
    names = {}
    for name, executor in spec["deploymentSpec"]["executors"].items():
        acc = executor.get("container", {}).get("resources", {}).get("accelerator")
        if acc:
            names[name] = acc.get("resourceType") or acc.get("type")
    return names


def test_kubeflow_yaml_requests_kubernetes_resource_names(tmp_path):
    spec, platform = compile_docs(
        tmp_path,
        "--platform=kubeflow",
        f"--node_selector={platforms.GKE_ACCELERATOR_LABEL}=nvidia-tesla-a100",
    )
    limits = accelerator_limits(spec)
    assert set(limits) == {"exec-pretrain", "exec-evaluate", "exec-embed"}
    for name in limits.values():
        assert platforms.is_extended_resource_name(name), name
        assert name not in AcceleratorType.__members__
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {n for n, c in executors.items() if "nodeSelector" in c} == set(limits)
    for config in executors.values():
        # KFP's own schema for the Kubernetes platform config (unknown fields fail) ...
        json_format.ParseDict(config, kubernetes_executor_config_pb2.KubernetesExecutorConfig())
        # ... and Kubernetes' label rules for the node selector.
        for key, value in config.get("nodeSelector", {}).get("labels", {}).items():
            assert platforms.qualified_name_errors(key) == []
            assert platforms.label_value_errors(value) == []


def test_vertex_yaml_requests_accelerator_type_enum_members(tmp_path):
    spec, platform = compile_docs(tmp_path, "--platform=vertex")
    limits = accelerator_limits(spec)
    assert set(limits) == {"exec-pretrain", "exec-evaluate", "exec-embed"}
    for name in limits.values():
        assert AcceleratorType[name] != AcceleratorType.ACCELERATOR_TYPE_UNSPECIFIED
    assert platform == {}


def test_vertex_multi_worker_pools_use_enum_members(tmp_path):
    spec, _ = compile_docs(tmp_path, "--platform=vertex", "--vertex_workers=2")
    comp = spec["components"]["comp-pretrain"]["inputDefinitions"]["parameters"]
    for pool in comp["worker_pool_specs"]["defaultValue"]:
        assert pool["machine_spec"]["accelerator_type"] in AcceleratorType.__members__


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--platform=kubeflow", "--accelerator_type=NVIDIA_TESLA_A100"], "extended resource"),
        (["--platform=vertex", "--accelerator_type=nvidia.com/gpu"], "AcceleratorType"),
        (["--platform=vertex", "--accelerator_type=NVIDIA_TESLA_Z9"], "AcceleratorType"),
        (["--platform=vertex", "--node_selector=a=b"], "--platform=kubeflow"),
        (["--platform=vertex", f"--s3_secret={KFP_MINIO_SECRET}"], "--platform=kubeflow"),
        (["--platform=kubeflow", "--vertex_workers=2"], "--platform=vertex"),
        (["--node_selector=Bad_Prefix.com/x=1"], "node selector"),
        (["--node_selector=pool=-gpu"], "node selector"),
        (["--s3_endpoint_url=minio:9000"], "http"),
    ],
)
def test_platform_rule_violations_are_one_line(tmp_path, capsys, flags, message):
    assert cli.main(["compile", f"--output={tmp_path / 'x.yaml'}", *flags]) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "x.yaml").exists()


def test_s3_credentials_from_the_kfp_minio_secret(tmp_path):
    endpoint = "http://minio-service.kubeflow:9000"
    spec, platform = compile_docs(
        tmp_path, f"--s3_secret={KFP_MINIO_SECRET}", f"--s3_endpoint_url={endpoint}"
    )
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == set(spec["deploymentSpec"]["executors"])  # every step
    for name, config in executors.items():
        parsed = kubernetes_executor_config_pb2.KubernetesExecutorConfig()
        json_format.ParseDict(config, parsed)
        (secret,) = parsed.secret_as_env
        assert secret.secret_name == KFP_MINIO_SECRET
        assert {m.secret_key: m.env_var for m in secret.key_to_env} == S3_SECRET_KEYS
        env = spec["deploymentSpec"]["executors"][name]["container"]["env"]
        assert {"name": "AWS_ENDPOINT_URL", "value": endpoint} in env


def test_s3_env_names_are_what_boto3_reads():
    # botocore comes with boto3, the S3 store's dependency (storage issue); until that
    # lands in this environment the test is skipped, not passed.
    credentials = pytest.importorskip("botocore.credentials")
    env_provider = credentials.EnvProvider()
    assert set(S3_SECRET_KEYS.values()) == {env_provider.ACCESS_KEY, env_provider.SECRET_KEY}


# --- make compile / make submit -----------------------------------------------------------


def make_dry_run(*args: str) -> str:
    result = subprocess.run(
        ["make", "-n", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_submit_never_recompiles():
    out = make_dry_run("submit", "IMAGE_REPO=r.example.com/x", "PIPELINE_YAML=build/a.yaml")
    assert "simclr_pipeline.cli submit --package=build/a.yaml" in out
    assert "simclr_pipeline.cli compile" not in out


def test_make_compile_passes_the_platform():
    out = make_dry_run("compile", "PLATFORM=vertex", "IMAGE_REPO=r.example.com/x")
    assert "--platform=vertex" in out and "--image_repo=r.example.com/x" in out


@pytest.fixture
def no_cloud_env(monkeypatch):
    for name in ("KFP_HOST", "VERTEX_PROJECT", "VERTEX_REGION", "PIPELINE_ROOT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_submit_refuses_images_without_a_registry_host(tmp_path, capsys, no_cloud_env):
    package = tmp_path / "p.yaml"
    assert cli.main(["compile", f"--output={package}", "--image_repo=simclr-kfp"]) == 0
    capsys.readouterr()
    no_cloud_env.setenv("KFP_HOST", "http://unused")
    assert cli.main(["submit", f"--package={package}"]) == 2
    assert "simclr-kfp/cpu:" in one_line_error(capsys)


def test_docker_hub_rule_is_dockers_own():
    from docker.auth import INDEX_NAME, resolve_repository_name

    for image in ("simclr-kfp/cpu:1", "ubuntu", "me/x"):
        assert platforms.registry_host(image) is None
        assert resolve_repository_name(image)[0] == INDEX_NAME
    for image in ("localhost:5000/x/cpu:1", "us-docker.pkg.dev/p/r/x/gpu:1", "docker.io/me/x"):
        assert platforms.registry_host(image) == resolve_repository_name(image)[0]


def test_submit_refuses_a_package_for_the_other_platform(tmp_path, capsys, no_cloud_env):
    package = tmp_path / "p.yaml"
    assert (
        cli.main(["compile", f"--output={package}", "--image_repo=r.example.com/x"]) == 0
    )  # kubeflow
    capsys.readouterr()
    no_cloud_env.setenv("VERTEX_PROJECT", "p")
    no_cloud_env.setenv("VERTEX_REGION", "us-central1")
    no_cloud_env.setenv("PIPELINE_ROOT", "gs://b/r")
    assert cli.main(["submit", f"--package={package}"]) == 2
    err = one_line_error(capsys)
    assert "compiled for kubeflow" in err and "PLATFORM=vertex" in err


def test_submit_without_a_compiled_package_says_compile(tmp_path, capsys, no_cloud_env):
    no_cloud_env.setenv("KFP_HOST", "http://unused")
    assert cli.main(["submit", f"--package={tmp_path / 'none.yaml'}"]) == 2
    assert "make compile" in one_line_error(capsys)


def test_tfjob_example_follows_kubernetes_rules():
    """docs/kubeflow-tfjob-pretrain.yaml: resource names and node labels Kubernetes accepts,
    and flags the pretrain task knows."""
    from simclr.train_config import PretrainConfig

    job = yaml.safe_load((REPO / "docs" / "kubeflow-tfjob-pretrain.yaml").read_text())
    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    for replica in job["spec"]["tfReplicaSpecs"].values():
        pod = replica["template"]["spec"]
        for key, value in pod.get("nodeSelector", {}).items():
            assert platforms.qualified_name_errors(key) == [] and not platforms.label_value_errors(
                value
            )
        for container in pod["containers"]:
            for kind in ("requests", "limits"):
                for name in container["resources"].get(kind, {}):
                    assert name in ("cpu", "memory") or platforms.is_extended_resource_name(name)
            flags = {a.split("=")[0].lstrip("-") for a in container["args"]}
            assert flags <= fields, flags - fields
