"""What the platforms DO with the compiled settings (issue 15), ported from their source.

Each test names the upstream file and tag whose behaviour it encodes. Nothing here runs
Kubernetes, Argo or Vertex AI: the rules are re-implemented from their source and applied
to the YAML our compiler writes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from simclr.errors import UserError
from simclr_pipeline import cli, locations, presets

REPO = Path(__file__).resolve().parents[1]

# Transcribed from kubeflow/pipelines at tag 2.17.0:
# backend/src/v2/objectstore/config.go: `DefaultEndpointInMultiUserMode = "seaweedfs.kubeflow:9000"`
UPSTREAM_KFP_S3_ENDPOINT = "seaweedfs.kubeflow:9000"
# manifests/kustomize/base/installs/multi-user/pipelines-profile-controller/sync.py: the Secret
# it creates in every profile namespace, and its keys.
UPSTREAM_KFP_SECRET = "mlpipeline-minio-artifact"
UPSTREAM_KFP_SECRET_KEYS = ("accesskey", "secretkey")
# sync.py: the namespace's defaultPipelineRoot.
UPSTREAM_DEFAULT_ROOT = "minio://mlpipeline/private-artifacts/{ns}/v2/artifacts"


def compile_docs(tmp_path: Path, *flags: str) -> tuple[dict, dict]:
    output = tmp_path / "p.yaml"
    assert cli.main(["compile", f"--output={output}", "--image_repo=r.example.com/x", *flags]) == 0
    docs = list(yaml.safe_load_all(output.read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})


# --------------------------------------------------------------------------- 1. retries


def _seconds(value) -> float:
    """Argo's wfv1.ParseStringToDuration: a bare number is seconds, else a Go duration."""
    text = str(value)
    if re.fullmatch(r"\d+", text):
        return float(text)
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smh])", text))


@dataclass
class ArgoRetry:
    """Argo's retry rule for a node with retryStrategy.backoff, as
    workflow/controller/operator.go (processNodeRetries) has it at argoproj/argo-workflows
    v4.0.5 (the version kubeflow/pipelines 2.17.0 pins in go.mod):

    - maxDurationDeadline = first attempt's StartedAt + maxDuration; now after it:
      "Max duration limit exceeded", no retry;
    - timeToWait = duration * factor^(attempts - 1); waitingDeadline = last FinishedAt +
      timeToWait; after maxDurationDeadline: "Backoff would exceed max duration limit";
    - no more than `limit` retries;
    - the retry pod's executionDeadline = maxDurationDeadline (it is killed there).

    KFP's Argo compiler (backend/src/v2/compiler/argocompiler/container.go at 2.17.0,
    getTaskRetryParametersWithValues) passes the task's retryPolicy fields verbatim:
    maxRetryCount -> limit, backoffDuration -> duration, backoffFactor -> factor,
    backoffMaxDuration -> maxDuration (seconds).
    """

    limit: int
    duration: float
    factor: float
    max_duration: float

    def run(self, work: float, preempt_after: list[float], lost: float) -> tuple[bool, str]:
        """Simulates a task needing `work` seconds of training; attempt i is preempted after
        preempt_after[i] seconds of running and loses `lost` seconds of it (since the last
        checkpoint). Returns (succeeded, why)."""
        first_start, now, done, attempts = 0.0, 0.0, 0.0, 0
        while True:
            deadline = first_start + self.max_duration if attempts else math.inf
            run_for = preempt_after[attempts] if attempts < len(preempt_after) else math.inf
            remaining = work - done
            if now + min(run_for, remaining) > deadline:
                return False, "killed at the execution deadline (maxDuration from first start)"
            if remaining <= run_for:
                return True, "finished"
            now += run_for
            done += max(0.0, run_for - lost)
            attempts += 1
            if attempts > self.limit:
                return False, "retry limit"
            deadline = first_start + self.max_duration
            if now > deadline:
                return False, "Max duration limit exceeded"
            wait = self.duration * self.factor ** (attempts - 1)
            if now + wait > deadline:
                return False, "Backoff would exceed max duration limit"
            now += wait


def _retry_policy(spec: dict) -> ArgoRetry:
    policy = spec["root"]["dag"]["tasks"]["pretrain"]["retryPolicy"]
    return ArgoRetry(
        limit=int(policy["maxRetryCount"]),
        duration=_seconds(policy["backoffDuration"]),
        factor=float(policy["backoffFactor"]),
        max_duration=_seconds(policy["backoffMaxDuration"]),
    )


def _default_training_seconds(views_per_second: float) -> float:
    """The default (presets.GPU) run: ceil(50,000 x epochs / batch) steps of 2 x batch views."""
    p = presets.GPU
    steps = math.ceil(50_000 * p["epochs"] / p["batch_size"])
    assert steps == 48_829  # README: Pretraining
    return steps * 2 * p["batch_size"] / views_per_second


# 400 views/s: a pessimistic figure for ResNet-50 (CIFAR stem) on one older GPU: the default
# run then takes ~2.9 days of compute.
SLOW_GPU_VIEWS_PER_SECOND = 400.0


def test_kubeflow_retries_can_rescue_the_default_training(tmp_path):
    spec, _ = compile_docs(tmp_path, "--platform=kubeflow")
    argo = _retry_policy(spec)
    work = _default_training_seconds(SLOW_GPU_VIEWS_PER_SECOND)
    lost = presets.GPU["checkpoint_every_seconds"]
    # Preempted near the end of every attempt but the last: each retry must still start and
    # have time to finish before the execution deadline.
    preemptions = [work * 0.9, work * 0.05, work * 0.04][: argo.limit]
    ok, why = argo.run(work, preemptions, lost)
    assert ok, why
    # A preemption after 2 hours (the old 3600 s window ended before it) is retried too.
    assert argo.run(work, [7200.0], lost) == (True, "finished")


def test_the_old_one_hour_window_cannot_rescue_it():
    """The rule above is strict enough to fail the setting issue 15 found."""
    old = ArgoRetry(limit=3, duration=60, factor=2, max_duration=3600)
    work = _default_training_seconds(SLOW_GPU_VIEWS_PER_SECOND)
    assert old.run(work, [7200.0], 600)[0] is False
    assert old.run(work, [1800.0], 600) == (
        False,
        "killed at the execution deadline (maxDuration from first start)",
    )


def test_vertex_keeps_its_own_meaning_of_backoff_max_duration(tmp_path):
    """On Vertex AI the field caps the wait between retries: an hour, as KFP's SDK defaults
    (kfp.dsl.structures.RetryPolicy.to_proto: backoff_max_duration or '3600s')."""
    spec, _ = compile_docs(tmp_path, "--platform=vertex")
    policy = _retry_policy(spec)
    assert policy.max_duration == 3600
    assert policy.duration * policy.factor ** (policy.limit - 1) <= policy.max_duration


def test_retry_window_flag(tmp_path):
    spec, _ = compile_docs(tmp_path, "--retry_window=30d")
    assert _retry_policy(spec).max_duration == 30 * 86400


# --------------------------------------------------------------------------- 2./3. store


def _executor_env(spec: dict, platform: dict, name: str) -> dict[str, str]:
    """The environment a task's container gets: the container's env plus, as KFP's driver
    does (backend/src/v2/driver/k8s.go at 2.17.0, SecretAsEnv), one variable per secret key."""
    container = spec["deploymentSpec"]["executors"][f"exec-{name}"]["container"]
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    k8s = platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {})
    for secret in k8s.get("executors", {}).get(f"exec-{name}", {}).get("secretAsEnv", []):
        assert secret["secretName"] == UPSTREAM_KFP_SECRET
        for pair in secret["keyToEnv"]:
            assert pair["secretKey"] in UPSTREAM_KFP_SECRET_KEYS
            env[pair["envVar"]] = f"<{secret['secretName']}:{pair['secretKey']}>"
    return env


class _Artifact:
    def __init__(self, uri: str, path: str = "/tmp/outputs/model") -> None:
        self.uri, self.path, self.metadata = uri, path, {}


@pytest.mark.parametrize("task", ["prepare-data", "augment", "pretrain", "evaluate"])
def test_default_kubeflow_compile_reaches_kfps_seaweedfs(tmp_path, task):
    """A stock KFP >= 2.16 install: every step gets the SeaweedFS endpoint (config.go) and
    the profile namespace's key (sync.py), so the default pipeline root works."""
    spec, platform = compile_docs(tmp_path)
    env = _executor_env(spec, platform, task)
    assert env["AWS_ENDPOINT_URL"] == f"http://{UPSTREAM_KFP_S3_ENDPOINT}"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
    if task == "pretrain":
        model = _Artifact(UPSTREAM_DEFAULT_ROOT.format(ns="team-a") + "/run/pretrain/1/model")
        checkpoints = locations.checkpoint_dir_for(model, "", "run")
        locations.check_s3_settings(checkpoints, model, env)  # does not stop the task


def test_without_the_secret_pretrain_says_so_before_training(tmp_path):
    spec, platform = compile_docs(tmp_path, "--s3_secret=none")
    env = _executor_env(spec, platform, "pretrain")
    assert "AWS_ACCESS_KEY_ID" not in env and "AWS_ENDPOINT_URL" not in env
    model = _Artifact(UPSTREAM_DEFAULT_ROOT.format(ns="team-a") + "/run/pretrain/1/model")
    with pytest.raises(UserError, match=f"--s3_secret={UPSTREAM_KFP_SECRET}"):
        locations.check_s3_settings(locations.checkpoint_dir_for(model, "", "run"), model, env)


def test_no_file_names_the_removed_minio_service():
    """KFP 2.16 removed MinIO (kubeflow/pipelines#12613): `minio-service` fails DNS."""
    files = [
        *REPO.glob("pipelines/**/*.py"),
        REPO / "README.md",
        REPO / "docs" / "pipelines.md",
        REPO / "Makefile",
    ]
    offenders = [str(f) for f in files if "minio-service" in f.read_text()]
    assert offenders == []


# --------------------------------------------------------------------------- 5./9. dirs


def test_checkpoints_and_logs_beside_the_model_not_inside():
    """KFP's launcher downloads an input artifact as every object under its URI
    (backend/src/v2/component/launcher_v2.go at 2.17.0, downloadArtifacts -> objectstore
    DownloadBlob of the artifact's key prefix): anything inside `model` travels to evaluate."""
    root = UPSTREAM_DEFAULT_ROOT.format(ns="team-a")
    model = _Artifact(f"{root}/simclr-cifar10/run-1/pretrain/7/model", "/minio/x/model")
    checkpoints = locations.checkpoint_dir_for(model, "", "run-1")
    logs = locations.tensorboard_dir_for(model, "", "run-1", env={})
    s3_model = "s3://" + model.uri[len("minio://") :]
    for uri in (checkpoints, logs):
        assert uri.startswith("s3://mlpipeline/private-artifacts/team-a/")  # sync.py allows it
        assert not uri.startswith(s3_model)
        assert uri.rsplit("/", 1)[0] == s3_model.rsplit("/", 1)[0]  # the task's own folder
    # Vertex AI: gs:// URIs with /gcs FUSE paths.
    vertex = _Artifact(
        "gs://b/root/123/job/pretrain_9/model", "/gcs/b/root/123/job/pretrain_9/model"
    )
    assert (
        locations.checkpoint_dir_for(vertex, "", "r")
        == "gs://b/root/123/job/pretrain_9/checkpoints"
    )
    vertex_logs = locations.tensorboard_dir_for(vertex, "", "r", env={})
    assert vertex_logs == "gs://b/root/123/job/pretrain_9/tensorboard_logs"
    env = {"AIP_TENSORBOARD_LOG_DIR": "gs://b/aip/logs/"}
    assert locations.tensorboard_dir_for(vertex, "", "r", env=env) == "gs://b/aip/logs/"
    assert locations.tensorboard_dir_for(vertex, "gs://tb", "r", env=env) == "gs://tb/r"


def test_tensorboard_pointer_is_a_command_that_reads_the_uri():
    """The pointer names a scheme TensorBoard and simclr.storage read (not minio://)."""
    from simclr import storage

    model = _Artifact(UPSTREAM_DEFAULT_ROOT.format(ns="ns") + "/p/r/pretrain/1/model")
    logs = locations.tensorboard_dir_for(model, "", "r", env={})
    markdown = locations.tensorboard_markdown(
        logs, locations.checkpoint_dir_for(model, "", "r"), True
    )
    assert "minio://" not in markdown
    command = re.search(r"make tensorboard LOGDIR=(\S+)", markdown)
    assert command and storage.is_remote(command.group(1)) and command.group(1) == logs
    assert "written live" in markdown and "PodDefault" in markdown


# --------------------------------------------------------------------------- 8. images, cache


def _git(repo: Path, *args: str) -> None:
    import subprocess

    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_image_tag_changes_with_the_code_not_with_the_docs(tmp_path):
    """KFP's cache key holds the image string (backend/src/v2/cacheutils/cache.go at
    2.17.0, GenerateCacheKey: ContainerSpec.Image) and Kubernetes' IfNotPresent keeps a
    node's old image under an old tag: so the tag must change when the image's code does."""
    from simclr_pipeline.source_tag import source_tag

    repo = tmp_path / "repo"
    (repo / "pipelines").mkdir(parents=True)
    (repo / "components").mkdir()
    (repo / "pyproject.toml").write_text('[project]\nversion = "9.9.9"\n')
    (repo / "components" / "a.py").write_text("x = 1\n")
    (repo / "README.md").write_text("docs\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    first = source_tag(root=repo)
    assert re.fullmatch(r"9\.9\.9-g[0-9a-f]{12}", first), first
    (repo / "README.md").write_text("more docs\n")  # not in the image
    assert source_tag(root=repo) == first
    (repo / "components" / "a.py").write_text("x = 2\n")
    dirty = source_tag(root=repo)
    assert dirty.startswith(first + "-dirty-")
    (repo / "components" / "a.py").write_text("x = 3\n")
    assert source_tag(root=repo) not in (first, dirty)  # each edit its own tag
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "two")
    assert source_tag(root=repo) not in (first, dirty)
    assert re.fullmatch(r"9\.9\.9-g[0-9a-f]{12}", source_tag(root=repo))
    assert source_tag("1.0", root=tmp_path / "not-a-checkout") == "1.0"


def test_unpinned_source_is_never_served_from_the_cache():
    """cache.go keys on the task's input parameters, not the bytes behind `source`: an
    archive replaced at the same URI would be a hit. Without sha256, submit turns caching off."""
    from simclr_pipeline import submit

    assert submit.run_caching({"epochs": 3}, None)[0] is False
    assert submit.run_caching({"sha256": "ab" * 32}, None) == (None, "")  # per-task settings
    assert submit.run_caching({}, True) == (True, "")  # --enable_caching wins


# --------------------------------------------------------------------------- 10. scheduling


def _gke_allocatable(vcpus: float, memory_gib: float) -> tuple[float, float]:
    """GKE's node reservations, "Plan GKE node sizes" (cloud.google.com/kubernetes-engine/
    docs/concepts/plan-node-sizes, memory and CPU reservations): CPU 6% of the first core,
    1% of the next, 0.5% of the next 2, 0.25% above 4; memory 25% of the first 4 GiB, 20% of
    the next 4, 10% of the next 8, 6% of the next 112, 2% above 128, plus 100 MiB for eviction."""

    def tiers(total, steps):
        reserved, start = 0.0, 0.0
        for size, share in steps:
            reserved += max(0.0, min(total, start + size) - start) * share
            start += size
        return reserved

    cpu = vcpus - tiers(vcpus, [(1, 0.06), (1, 0.01), (2, 0.005), (math.inf, 0.0025)])
    mem = memory_gib - tiers(
        memory_gib, [(4, 0.25), (4, 0.20), (8, 0.10), (112, 0.06), (math.inf, 0.02)]
    )
    return cpu, mem - 100 / 1024


# Per-node system pods on a GKE GPU node (kube-proxy, logging and metrics agents, the NVIDIA
# device plugin, ...): a margin, not a measurement.
SYSTEM_PODS_CPU, SYSTEM_PODS_GIB = 0.6, 1.5


@pytest.mark.parametrize(
    "machine, vcpus, gib", [("g2-standard-8", 8, 32), ("n1-standard-8", 8, 30)]
)
def test_gpu_step_requests_fit_an_8_vcpu_gpu_node(tmp_path, machine, vcpus, gib):
    spec, _ = compile_docs(tmp_path)
    resources = spec["deploymentSpec"]["executors"]["exec-pretrain"]["container"]["resources"]
    cpu, mem = _gke_allocatable(vcpus, gib)
    assert float(resources["resourceCpuRequest"]) <= cpu - SYSTEM_PODS_CPU, machine
    assert _gib(resources["resourceMemoryRequest"]) <= mem - SYSTEM_PODS_GIB, machine


def _gib(quantity: str) -> float:
    units = {"G": 1e9 / 2**30, "Gi": 1.0, "M": 1e6 / 2**30, "Mi": 1 / 1024}
    number, unit = re.fullmatch(r"([\d.]+)([A-Za-z]*)", quantity).groups()
    return float(number) * units[unit]


def test_gpu_pretrain_gets_memory_backed_dev_shm(tmp_path):
    """NCCL needs more than the container's 64 MiB /dev/shm (kubeflow/pipelines#9147); KFP's
    driver turns an emptyDirMount into a pod volume with that medium (backend/src/v2/driver/
    k8s.go at 2.17.0)."""
    _, platform = compile_docs(tmp_path)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    mounts = executors["exec-pretrain"]["emptyDirMounts"]
    assert [(m["mountPath"], m["medium"]) for m in mounts] == [("/dev/shm", "Memory")]
    assert "emptyDirMounts" not in executors["exec-prepare-data"]
    _, cpu_only = compile_docs(tmp_path, "--accelerator_type=none")
    cpu_executors = cpu_only["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert "emptyDirMounts" not in cpu_executors["exec-pretrain"]


# --------------------------------------------------------------------------- 11. Vertex AI


def _custom_job_pool(spec: dict) -> dict:
    for component in spec["components"].values():
        params = component.get("inputDefinitions", {}).get("parameters", {})
        pools = params.get("worker_pool_specs", {}).get("defaultValue")
        if pools:
            return pools[0]
    raise AssertionError("no custom job")


# Rows of Vertex AI's GPU table ("Configure compute resources for custom training",
# cloud.google.com/vertex-ai/docs/training/configure-compute#gpu-compatibility-table).
VERTEX_TABLE_ROWS_OK = [
    ("a2-highgpu-1g", "NVIDIA_TESLA_A100", 1),
    ("a2-highgpu-8g", "NVIDIA_TESLA_A100", 8),
    ("a2-ultragpu-1g", "NVIDIA_A100_80GB", 1),
    ("a3-highgpu-8g", "NVIDIA_H100_80GB", 8),
    ("g2-standard-8", "NVIDIA_L4", 1),
    ("n1-standard-8", "NVIDIA_TESLA_T4", 1),
]
VERTEX_TABLE_ROWS_BAD = [
    ("a2-highgpu-1g", "NVIDIA_H100_80GB", 1),  # issue 15: rejected after the CPU steps ran
    ("a2-highgpu-1g", "NVIDIA_TESLA_A100", 2),
    ("g2-standard-8", "NVIDIA_L4", 2),
    ("n1-standard-8", "NVIDIA_TESLA_A100", 1),  # A100s come only on A2 machines
]


@pytest.mark.parametrize("machine, accelerator, count", VERTEX_TABLE_ROWS_OK)
def test_vertex_machine_gpu_pairs_from_the_table_compile(tmp_path, machine, accelerator, count):
    spec, _ = compile_docs(
        tmp_path,
        "--platform=vertex",
        "--vertex_workers=2",
        f"--accelerator_type={accelerator}",
        f"--vertex_machine_type={machine}",
        f"--vertex_accelerator_count={count}",
    )
    assert _custom_job_pool(spec)["machine_spec"] == {
        "machine_type": machine,
        "accelerator_type": accelerator,
        "accelerator_count": count,
    }


@pytest.mark.parametrize("machine, accelerator, count", VERTEX_TABLE_ROWS_BAD)
def test_vertex_pairs_outside_the_table_are_refused_at_compile(
    tmp_path, capsys, machine, accelerator, count
):
    code = cli.main(
        [
            "compile",
            f"--output={tmp_path / 'p.yaml'}",
            "--image_repo=r.example.com/x",
            "--platform=vertex",
            "--vertex_workers=2",
            f"--accelerator_type={accelerator}",
            f"--vertex_machine_type={machine}",
            f"--vertex_accelerator_count={count}",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: Vertex AI runs") and "\n" not in err
    assert not (tmp_path / "p.yaml").exists()


def test_vertex_machine_is_derived_from_the_gpu(tmp_path):
    spec, _ = compile_docs(
        tmp_path,
        "--platform=vertex",
        "--vertex_workers=2",
        "--accelerator_type=NVIDIA_H100_80GB",
        "--vertex_accelerator_count=8",
    )
    assert _custom_job_pool(spec)["machine_spec"]["machine_type"] == "a3-highgpu-8g"


def test_vertex_gpu_count_is_a_compiled_constant(tmp_path):
    spec, _ = compile_docs(tmp_path, "--platform=vertex", "--vertex_accelerator_count=2")
    accelerator = spec["deploymentSpec"]["executors"]["exec-pretrain"]["container"]["resources"][
        "accelerator"
    ]
    assert str(accelerator.get("resourceCount", accelerator.get("count"))) == "2"
    assert "num_gpus" not in json_dumps(accelerator)


def json_dumps(value) -> str:
    import json

    return json.dumps(value)


def test_vertex_tensorboard_goes_to_the_custom_job(tmp_path):
    """GCPC 2.22.0 create_custom_training_job_from_component: `tensorboard` and
    `base_output_directory` (Vertex sets AIP_TENSORBOARD_LOG_DIR under the latter)."""
    name = "projects/p/locations/us-central1/tensorboards/123"
    spec, _ = compile_docs(tmp_path, "--platform=vertex", f"--vertex_tensorboard={name}")
    custom_job = next(
        c
        for c in spec["components"].values()
        if "tensorboard" in c.get("inputDefinitions", {}).get("parameters", {})
    )
    params = custom_job["inputDefinitions"]["parameters"]
    assert params["tensorboard"]["defaultValue"] == name
    task = spec["root"]["dag"]["tasks"]["pretrain"]["inputs"]["parameters"]
    base = task["base_output_directory"]["runtimeValue"]["constant"]
    assert base.startswith("{{$.pipeline_root}}/{{$.pipeline_job_uuid}}/")
    bad = ["compile", f"--output={tmp_path}/q.yaml", "--platform=vertex", "--vertex_tensorboard=x"]
    assert cli.main(bad) == 2


def test_dirs_beside_the_model_do_not_collide_with_pretrains_outputs(tmp_path):
    """KFP puts every output of a task in the same folder (<task>/<id>/<output name>): a
    folder beside the model must not take another output's name (pretrain has one called
    `tensorboard`, a Markdown file)."""
    spec, _ = compile_docs(tmp_path)
    outputs = set(spec["components"]["comp-pretrain"]["outputDefinitions"]["artifacts"])
    assert {"model", "tensorboard"} <= outputs
    model = _Artifact("gs://b/root/run/pretrain/1/model", "/gcs/b/root/run/pretrain/1/model")
    for uri in (
        locations.checkpoint_dir_for(model, "", "run"),
        locations.tensorboard_dir_for(model, "", "run", env={}),
    ):
        assert uri.rsplit("/", 1)[-1] not in outputs, uri


def test_a_package_with_kubernetes_settings_is_not_sent_to_vertex(tmp_path):
    """Vertex AI reads a single YAML document; the Kubernetes platform spec is a second one."""
    from simclr_pipeline import submit

    output = tmp_path / "p.yaml"
    flags = ["--image_repo=r.example.com/x", "--accelerator_type=none"]
    assert cli.main(["compile", f"--output={output}", *flags]) == 0
    with pytest.raises(submit.SubmitError, match="compiled for kubeflow, not vertex"):
        submit.check_package(str(output), "vertex")
    assert cli.main(["compile", f"--output={output}", *flags, "--s3_secret=none"]) == 0
    submit.check_package(str(output), "vertex")


def test_images_that_can_be_re_pushed_are_always_pulled(tmp_path):
    """Kubernetes' default pull policy for a non-`latest` tag is IfNotPresent, which KFP's
    driver keeps unless the task sets one (backend/src/v2/driver/k8s.go at 2.17.0,
    ImagePullPolicy): a re-pushed `1.2.3` would not reach a node that has the old one."""

    def policies(*flags):
        _, platform = compile_docs(tmp_path, *flags)
        executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        return {c.get("imagePullPolicy") for c in executors.values()}

    assert policies("--image_tag=1.2.3") == {"Always"}
    assert policies("--image_tag=0.1.0-g0123456789ab") == {None}
    digest = "r.example.com/x/gpu@sha256:" + "a" * 64
    assert policies("--image_tag=0.1.0-g0123456789ab", f"--gpu_image={digest}") == {None}
