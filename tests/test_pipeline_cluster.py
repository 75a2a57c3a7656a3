"""How the pretrain component behaves on a cluster, run for real here:

- a retry after the pod was killed resumes from the object store (GCS emulator) at the
  step it reached, from a fresh task directory, as Kubeflow/Vertex AI retries do;
- on a Vertex AI multi-worker job every replica runs the component with the same
  arguments: only the chief writes the task's outputs (two processes, real
  MultiWorkerMirroredStrategy);
- an older KFP backend that hands over `{{$.pipeline_job_uuid}}` unresolved stops the
  task with one line naming the minimum backend.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from simclr import storage
from simclr.errors import UserError
from simclr_pipeline import adapters, cli, locations, platforms

from tests.component_runner import pretrain_executor_input
from tests.fixtures_gcs import free_ports
from tests.fixtures_train import run_together

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "tests" / "component_runner.py"
ROLES = ("chief", "worker")  # the two-process cluster of the chief test
TINY = {
    "encoder": "resnet18",
    "width_multiplier": 0.125,
    "stem": "auto",
    "batch_size": 32,
    "learning_rate": 0.5,
    "temperature": 0.5,
    "precision": "float32",
    "strategy": "auto",
    "seed": 0,
    "tensorboard_root": "",
    "checkpoint_every_seconds": 600.0,
}


def latest_checkpoint_step(checkpoint_dir: str) -> int | None:
    index = storage.join(checkpoint_dir, "checkpoint")
    if not storage.exists(index):
        return None
    match = re.search(r'model_checkpoint_path:\s*"ckpt-(\d+)"', storage.read_text(index))
    return int(match.group(1)) if match else None


def descendants(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                children += [int(entry.name), *descendants(int(entry.name))]
    return children


def executor_input_of_pretrain(pid: int) -> dict | None:
    """The --executor_input of kfp.local's running pretrain task (a child process)."""
    for child in descendants(pid):
        try:
            argv = (Path("/proc") / str(child) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode() for a in argv]
        if "kfp.dsl.executor_main" in args and "pretrain" in args:
            return json.loads(args[args.index("--executor_input") + 1])
    return None


def test_killed_pretrain_resumes_from_the_object_store(
    tiny_synthetic_archive, gcs_bucket, tmp_path
):
    checkpoint_root = f"{gcs_bucket}/ckpt"
    root = tmp_path / "run"
    params = {**TINY, "epochs": 12, "max_train_examples": 128, "checkpoint_every_steps": 2}
    command = [
        sys.executable,
        "-m",
        "simclr_pipeline.cli",
        "run-local",
        "--preset=test",
        f"--root={root}",
        f"--source={tiny_synthetic_archive.path}",
        f"--param=checkpoint_root={checkpoint_root}",
        *(f"--param={k}={v}" for k, v in params.items() if k != "tensorboard_root"),
    ]
    env = {**os.environ, "SIMCLR_CACHE_DIR": str(tmp_path / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    executor_input, checkpoint_dir = None, None
    try:
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline and proc.poll() is None:
            executor_input = executor_input or executor_input_of_pretrain(proc.pid)
            if executor_input and checkpoint_dir is None:
                run_id = executor_input["inputs"]["parameterValues"]["run_id"]
                checkpoint_dir = locations.run_scoped_uri(checkpoint_root, run_id, "checkpoints")
            if checkpoint_dir and (latest_checkpoint_step(checkpoint_dir) or 0) >= 4:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the pipeline ended before pretraining could be killed"
        assert checkpoint_dir, "no checkpoint appeared in the object store"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the pod dies: no SIGTERM checkpoint
        proc.wait(timeout=30)
    reached = latest_checkpoint_step(checkpoint_dir)
    total = 12 * 128 // 32
    assert 4 <= reached < total

    # The retry: the same executor input (same run id, same arguments) in a fresh task
    # directory, nothing from the killed pod's disk.
    fresh = tmp_path / "retry"
    fresh.mkdir()
    for name, spec in executor_input["outputs"]["artifacts"].items():
        spec["artifacts"][0]["uri"] = str(fresh / name)
    executor_input["outputs"]["outputFile"] = str(fresh / "executor_output.json")
    (fresh / "input.json").write_text(json.dumps(executor_input))
    retry = subprocess.run(
        [sys.executable, str(RUNNER), str(fresh / "input.json"), "pretrain"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert retry.returncode == 0, retry.stderr[-3000:]
    metrics = json.loads((fresh / "model" / "metrics.json").read_text())
    assert metrics["steps"] == total
    assert metrics["steps_this_run"] == total - reached  # resumed at the step it reached
    assert (fresh / "executor_output.json").exists()


def test_only_the_chief_writes_the_outputs(tiny_prepared_data, tmp_path):
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "policy.json").write_text("{}")  # the default policy
    ports = free_ports(2)
    cluster = {"chief": [f"127.0.0.1:{ports[0]}"], "worker": [f"127.0.0.1:{ports[1]}"]}
    params = {
        **TINY,
        "run_id": "r1",
        "epochs": 1,
        "max_train_examples": 64,
        "checkpoint_every_steps": 100,
        "checkpoint_root": "",
        "num_gpus": 0,
        "options": {"monitor_every_epochs": 0, "warmup_epochs": 0.0},
    }
    commands = []
    for role in ROLES:
        out = tmp_path / role  # separate paths so we can see who wrote what
        out.mkdir()
        executor_input = pretrain_executor_input(
            data_dir=tiny_prepared_data, policy_dir=str(policy), out_dir=out, parameters=params
        )
        (out / "input.json").write_text(json.dumps(executor_input))
        tf_config = json.dumps({"cluster": cluster, "task": {"type": role, "index": 0}})
        commands.append(
            (
                [sys.executable, str(RUNNER), str(out / "input.json"), "pretrain"],
                {"TF_CONFIG": tf_config, "TF_CPP_MIN_LOG_LEVEL": "2"},
            )
        )
    results = dict(zip(ROLES, run_together(commands, tmp_path / "logs", timeout=300), strict=True))
    for role, p in results.items():
        assert p.returncode == 0, (role, p.stderr[-3000:])
    chief, worker = tmp_path / "chief", tmp_path / "worker"
    assert (chief / "executor_output.json").exists()
    assert (chief / "model" / "metrics.json").exists()
    assert "TensorBoard" in (chief / "tensorboard").read_text()
    # The worker wrote no file (its checkpointer may leave an empty directory).
    written = [p.relative_to(worker) for p in worker.rglob("*") if p.is_file()]
    assert [str(p) for p in written] == ["input.json"]
    assert "the chief writes the outputs" in results["worker"].stdout


def test_is_chief_follows_tensorflow_rule():
    def env(cluster, kind, index=0):
        return {
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})
        }

    with_chief = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    workers_only = {"worker": ["b:1", "c:1"]}
    assert adapters.is_chief_process({})
    assert adapters.is_chief_process(env(with_chief, "chief"))
    assert not adapters.is_chief_process(env(with_chief, "worker", 0))
    assert adapters.is_chief_process(env(workers_only, "worker", 0))
    assert not adapters.is_chief_process(env(workers_only, "worker", 1))
    assert adapters.is_chief_process(env(with_chief, "evaluator"))  # its own chief, as TF's


def test_a_task_type_tensorflow_refuses_is_one_line(capsys, monkeypatch):
    """TensorFlow 2.21's multi-worker training refuses a "master" task (AI Platform's TF 1
    name; multi_worker_util._validate_cluster_spec): the pretrain adapter, the body the pod
    runs, says so and exits 2 before it touches an artifact."""
    tf_config = {"cluster": {"master": ["a:1"], "worker": ["b:1"]}, "task": {"type": "master"}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    with pytest.raises(SystemExit) as exit_:
        adapters.pretrain(
            *[None] * 5, run_id="run-1", tensorboard_root="", checkpoint_root="", options={}
        )
    assert exit_.value.code == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("error: TF_CONFIG names task type 'master'") and "\n" not in line


def test_checkpoints_default_to_the_artifact_uri_not_the_pod_disk():
    class Art:
        def __init__(self, uri, path):
            self.uri, self.path = uri, path

    # Kubeflow's artifact URIs (gs://, and KFP's MinIO as S3) vs the pod's local copy.
    assert locations.durable_uri(Art("gs://b/root/run/pretrain/1/model", "/gcs/b/x")) == (
        "gs://b/root/run/pretrain/1/model"
    )
    assert locations.durable_uri(Art("minio://mlpipeline/v2/artifacts/m", "/minio/x")) == (
        "s3://mlpipeline/v2/artifacts/m"
    )
    assert locations.durable_uri(Art("/local/root/model", "/local/root/model")) == (
        "/local/root/model"
    )


def test_kfp_minio_store_without_credentials_is_one_line():
    class Art:
        uri, path = "minio://mlpipeline/v2/artifacts/m", "/minio/mlpipeline/v2/artifacts/m"

    uri = adapters.storage.join(locations.durable_uri(Art), "checkpoints")
    with pytest.raises(UserError, match="--s3_secret=mlpipeline-minio-artifact"):
        locations.check_s3_settings(uri, Art, env={})
    locations.check_s3_settings(
        uri, Art, env={"AWS_ENDPOINT_URL": "http://m:9000", "AWS_ACCESS_KEY_ID": "k"}
    )


def test_unresolved_run_id_names_the_minimum_backend(tmp_path, capsys):
    # What an older backend hands over: the placeholder exactly as compiled.
    output = tmp_path / "p.yaml"
    assert cli.main(["compile", f"--output={output}", "--image_repo=r.example.com/x"]) == 0
    spec = next(yaml.safe_load_all(output.read_text()))
    run_id = spec["root"]["dag"]["tasks"]["pretrain"]["inputs"]["parameters"]["run_id"]
    placeholder = run_id["runtimeValue"]["constant"]
    calls = [
        lambda: adapters.pretrain(
            *[None] * 5, run_id=placeholder, tensorboard_root="", checkpoint_root="", options={}
        ),
        lambda: adapters.evaluate(*[None] * 8, run_id=placeholder, tensorboard_root="", options={}),
    ]
    for call in calls:
        with pytest.raises(SystemExit) as exc:
            call()
        assert exc.value.code == 2
        message = capsys.readouterr().err.strip()
        assert message.startswith("error: ") and "\n" not in message
        assert f">= {platforms.MIN_KFP_BACKEND}" in message and placeholder in message
