"""The container images: their Dockerfiles and pins as text, then the real thing.

The tests that need Docker build both images from this checkout (Docker's layer cache
makes repeated runs cheap), run the whole pipeline under kfp.local's DockerRunner, run
each image as an arbitrary UID in group 0 and with a read-only root, and feed bad input
to the tasks inside the images. Without an engine they are skipped with a warning; with
CI=true they fail instead (tests/fixtures_docker.py).
"""

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import requires, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.fixtures_docker import docker_run
from tests.fixtures_images import cifar_jpegs, write_class_folders

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO.parent / "shared" / "tools" / "cifar10_tarball.py"
DOCKERFILES = {
    "cpu": REPO / "containers" / "Dockerfile.cpu",
    "gpu": REPO / "containers" / "Dockerfile.gpu",
}
GPU_CONSTRAINTS = REPO / "containers" / "constraints-gpu.txt"
SECRET_WORDS = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current += " " + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            op, _, args = current.strip().partition(" ")
            result.append((op.upper(), args.strip()))
            current = ""
    return result


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            found[normalize(name)] = pinned.split(";")[0].strip()
    return found


# ---------------------------------------------------------------------------------------
# The Dockerfiles and pins, as text
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_base_image_is_an_argument(kind):
    ops = instructions(DOCKERFILES[kind])
    assert ops[0] == ("ARG", "BASE_IMAGE=python:3.11-slim")
    assert [args for op, args in ops if op == "FROM"] == ["${BASE_IMAGE}"]


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_runs_as_non_root_in_group_0(kind):
    users = [args for op, args in instructions(DOCKERFILES[kind]) if op == "USER"]
    assert users, "no USER instruction"
    uid, _, gid = users[-1].partition(":")
    assert uid not in ("root", "0") and gid == "0"


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_no_secrets(kind):
    for op, args in instructions(DOCKERFILES[kind]):
        if op in ("ENV", "ARG", "LABEL"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split()[0]]
            assert not [n for n in names if SECRET_WORDS.search(n)], (op, args)
        if op in ("COPY", "ADD"):
            assert not SECRET_WORDS.search(args), (op, args)
            assert ".env" not in args.split() and "id_rsa" not in args


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_installs_pinned_packages_only(kind):
    ops = instructions(DOCKERFILES[kind])
    copies = " ".join(args for op, args in ops if op == "COPY")
    assert "constraints.txt" in copies
    installs = [
        cmd
        for op, args in ops
        if op == "RUN"
        for cmd in re.split(r"&&|;", args)
        if re.search(r"\bpip3? (install|wheel)\b", cmd)
    ]
    assert installs
    for cmd in installs:
        assert "-c constraints.txt" in cmd or "--no-deps ." in cmd, cmd
        # nothing named on the command line except the local package and constraint files
        words = re.split(r"\b(?:install|wheel)\b", cmd, maxsplit=1)[1].split()
        takes_value = ("-c", "-r", "--wheel-dir", "--find-links")
        loose = [
            w
            for i, w in enumerate(words)
            if not w.startswith("-") and w != "." and words[i - 1] not in takes_value
        ]
        assert not loose, cmd


def test_gpu_constraints_pin_every_nvidia_wheel_tensorflow_asks_for():
    """Read from TensorFlow's own metadata: the [and-cuda] extra of the installed 2.21."""
    gpu_pins = pins(GPU_CONSTRAINTS)
    assert gpu_pins["tensorflow"] == version("tensorflow-cpu")
    and_cuda = [
        Requirement(r)
        for r in requires("tensorflow-cpu")
        if Requirement(r).marker and Requirement(r).marker.evaluate({"extra": "and-cuda"})
    ]
    assert len(and_cuda) >= 10
    for req in and_cuda:
        assert normalize(req.name) in gpu_pins, req.name
        assert req.specifier.contains(gpu_pins[normalize(req.name)]), (req, gpu_pins)
    nvidia = {name for name in gpu_pins if name.startswith("nvidia-")}
    assert nvidia == {normalize(r.name) for r in and_cuda}


@pytest.mark.parametrize(
    "extras, exclude",
    [("train,pipeline", []), ("train,gpu,pipeline", ["--exclude", "tensorflow-cpu"])],
)
def test_requirements_are_all_pinned_by_constraints(extras, exclude):
    result = subprocess.run(
        [sys.executable, "containers/requirements.py", "--extras", extras, *exclude],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    names = [normalize(Requirement(r).name) for r in result.stdout.splitlines() if r.strip()]
    assert "kfp" in names and "absl-py" in names
    assert ("tensorflow-cpu" in names) == (not exclude)
    assert ("tensorflow" in names) == bool(exclude)
    pinned = set(pins(REPO / "constraints.txt")) | (
        set(pins(GPU_CONSTRAINTS)) if exclude else set()
    )
    assert set(names) <= pinned


def test_dockerignore_keeps_the_context_small():
    patterns = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "runs", "build", ".git", "tests", "*.tar.gz"} <= patterns
    needed = ("pyproject.toml", "constraints.txt", "README.md", "components", "pipelines")
    assert not patterns & set(needed)


def _check_cuda():
    spec = importlib.util.spec_from_file_location("check_cuda", REPO / "containers/check_cuda.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "found, built, ok",
    [
        ((12, 5), "12.5.1", True),  # runtime 12.5 for a 12.5.1 build
        ((12, 8), "12.5.1", True),  # newer minor: CUDA minor-version compatibility
        ((12, 4), "12.5.1", False),
        ((11, 8), "12.5.1", False),
        ((13, 0), "12.5.1", False),
        ((9, 3, 0), "9", True),  # cuDNN: TensorFlow records the major version only
        ((8, 9, 7), "9", False),  # the cuDNN 8 of the tensorflow:2.18+-gpu images
        ((9, 1, 0), "9.3", False),
    ],
)
def test_cuda_check_compares_versions(found, built, ok):
    check = _check_cuda()
    assert check.satisfies(found, check.version_tuple(built)) is ok


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs binutils' readelf")
def test_cuda_check_reads_runpath_as_readelf_does():
    import tensorflow as tf

    # TensorFlow's own libraries, with a RUNPATH (_pywrap_...) and without (the CPU
    # build's libtensorflow_framework).
    tf_dir = Path(tf.__file__).parent
    (framework,) = tf_dir.glob("libtensorflow_framework.so.*")
    for library in (tf_dir / "python" / "_pywrap_tensorflow_internal.so", framework):
        dynamic = subprocess.run(
            ["readelf", "-d", str(library)], capture_output=True, text=True, check=True
        ).stdout
        listed = re.findall(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.*)\]", dynamic)
        origin = str(library.parent)
        expected = [d.replace("$ORIGIN", origin) for d in listed[0].split(":")] if listed else []
        assert _check_cuda().elf_runpath(str(library)) == expected


def test_pipeline_asks_pretrain_for_a_gpu_only_when_it_requests_one():
    from kfp.pipeline_spec import pipeline_spec_pb2
    from simclr_pipeline.options import PipelineOptions
    from simclr_pipeline.pipeline import build_pipeline

    def pretrain_gpus(options):
        spec = build_pipeline(options).pipeline_spec
        task = spec.root.dag.tasks["pretrain"]
        gpus = task.inputs.parameters["num_gpus"]
        kind = gpus.WhichOneof("kind")
        if kind == "component_input_parameter":
            return "pipeline:" + gpus.component_input_parameter
        return gpus.runtime_value.constant.number_value

    assert pretrain_gpus(PipelineOptions()) == "pipeline:num_gpus"
    assert pretrain_gpus(PipelineOptions(accelerator_type="")) == 0
    assert pipeline_spec_pb2.PipelineSpec  # the types above are KFP's own proto


# ---------------------------------------------------------------------------------------
# The real thing: a Docker engine, the images built from this checkout
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def host_archive(tmp_path_factory) -> Path:
    """A real CIFAR-10 subset in the official layout, on the host's disk."""
    out = tmp_path_factory.mktemp("docker_cifar")
    subprocess.run(
        [sys.executable, str(TOOL), "--out", str(out), "--train", "2000", "--test", "500"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out / "cifar-10-binary.tar.gz"


def run_docker_cli(images, root: Path, source: Path, *params: str) -> subprocess.CompletedProcess:
    """`simclr-kfp run-docker --preset=test` as `make run-docker` runs it, in a subprocess."""
    args = [
        sys.executable,
        "-m",
        "simclr_pipeline.cli",
        "run-docker",
        "--preset=test",
        f"--root={root}",
        f"--source={source}",
        f"--image_repo={images.repo}",
        f"--image_tag={images.tag}",
        "--retries=0",  # kfp.local honours retries, with their 60 s backoff
        *(f"--param={p}" for p in params),
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env, timeout=1200)


# Enough pretraining on 2,000 real images (60 steps) that the encoder beats its random
# init on kNN (the demo preset: 0.26 at init, 0.32 after 39 steps of 256 images).
LEARNING_PARAMS = (
    "max_train_examples=2000",
    "epochs=4",
    "batch_size=128",
    "learning_rate=1.0",
    "eval_protocols=knn",
    "eval_max_train_examples=2000",
    'pretrain_options={"warmup_epochs": 0.5, "monitor_every_epochs": 0, "log_every_steps": 5}',
)


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
    }


@pytest.fixture(scope="module")
def host_photos(tmp_path_factory) -> Path:
    """Your own images on the host's disk (issue 16): the 3,000 real CIFAR-10 JPEG files
    of tests/fixtures_images.py in class folders, as `make run-docker IMAGES=DIR` takes."""
    jpegs = cifar_jpegs()
    folder = tmp_path_factory.mktemp("docker_photos") / "photos"
    write_class_folders(folder, jpegs.files, jpegs.classes)
    return folder


@pytest.fixture(scope="module")
def docker_pipeline(built_images, host_photos, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("docker_run") / "run"
    before = _snapshot(host_photos)
    # 2,400 train and 600 test images (the archive run had 2,000 and 500).
    split = 'prepare_options={"test_fraction": 0.2}'
    result = run_docker_cli(built_images, root, host_photos, split, *LEARNING_PARAMS)
    assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-4000:])
    return {
        "result": result,
        "root": root,
        "summary": json.loads((root / "summary.json").read_text()),
        "host_before": before,
    }


def test_pipeline_under_docker_runner_learns(docker_pipeline, built_images):
    summary, stdout = docker_pipeline["summary"], docker_pipeline["result"].stdout
    evaluation = summary["evaluation"]
    print(f"build seconds: {built_images.build_seconds}; knn {evaluation}")
    assert evaluation["knn_top1"] > evaluation["baseline"]["knn_top1"]
    assert summary["pretrain"]["steps"] == math.ceil(2000 * 4 / 128)  # the ceil'd schedule
    # The same closing table as `make demo`.
    assert "SimCLR pipeline finished in" in stdout and "knn_top1" in stdout
    assert f"all artifacts under {docker_pipeline['root']}" in stdout


def test_pipeline_read_the_host_folder_in_place(docker_pipeline, host_photos):
    (manifest,) = docker_pipeline["root"].glob("pipeline_root/*/prepare-data/dataset/manifest.json")
    content = json.loads(manifest.read_text())
    assert content["source"]["uri"] == str(host_photos)  # the mount's path, not a copy
    assert content["labelled"] is True and len(content["class_names"]) == 10
    assert content["splits"]["test"]["num_examples"] == 600
    assert manifest.stat().st_uid == os.getuid()  # written by the caller's UID
    # Mounted read-only (local_run.docker_runner_kwargs) and left exactly as it was.
    assert _snapshot(host_photos) == docker_pipeline["host_before"]


def test_pipeline_that_requests_a_gpu_does_not_train_on_cpu(built_images, host_archive, tmp_path):
    result = run_docker_cli(built_images, tmp_path / "run", host_archive, "num_gpus=1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: pipeline failed:")
    lines = [line.strip() for line in (result.stdout + result.stderr).splitlines()]
    refused = [line for line in lines if line.startswith("error: --require_gpu: ")]
    assert refused and "TensorFlow sees no GPU" in refused[0]
    assert not list((tmp_path / "run").glob("pipeline_root/*/pretrain/model/encoder"))


ANY_UID_CHECK = """
import json, os, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import keras
from simclr import storage
home = os.environ["HOME"]
written = {}
for name, path in (
    ("home", os.path.join(home, ".probe") if HOME_WRITABLE else None),
    ("matplotlib", os.path.join(matplotlib.get_cachedir(), "probe.png")),
    ("keras", os.path.join(keras.config.keras_home() if hasattr(keras.config, "keras_home")
                           else os.environ["KERAS_HOME"], "probe")),
    ("simclr_cache", os.path.join(storage.default_cache_root(), "probe")),
):
    if path is None:
        continue
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if name == "matplotlib":
        plt.plot([0, 1]); plt.savefig(path)
    else:
        open(path, "w").write("x")
    written[name] = path
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "written": written}))
"""


@pytest.mark.parametrize("read_only_root", [False, True], ids=["writable_root", "read_only_root"])
@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_image_runs_as_any_uid_in_group_0(built_images, kind, read_only_root):
    options = ("--read-only", "--tmpfs=/tmp") if read_only_root else ()
    code = ANY_UID_CHECK.replace("HOME_WRITABLE", str(not read_only_root))
    image = getattr(built_images, kind)
    result = docker_run(
        built_images.cli, image, "python", "-c", code, user="12345:0", options=options
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert (report["uid"], report["gid"]) == (12345, 0)
    expected = {"matplotlib", "keras", "simclr_cache"} | ({"home"} if not read_only_root else set())
    assert set(report["written"]) == expected
    if read_only_root:  # everything written went to the mounted /tmp
        assert all(p.startswith("/tmp/") for p in report["written"].values()), report


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return last


def test_bad_input_in_the_cpu_image_is_one_line_and_exit_2(built_images):
    result = docker_run(
        built_images.cli,
        built_images.cpu,
        "sh",
        "-c",
        "python -m simclr.tasks.prepare_data --source=/data/missing.tar.gz --output_dir=/tmp/out;"
        " code=$?; test ! -e /tmp/out/manifest.json || echo 'manifest written' >&2; exit $code",
        user="12345:0",
    )
    line = one_line_error(result)
    assert "/data/missing.tar.gz" in line and "manifest written" not in result.stderr


def tensorflow_build_info(cli: str, image: str) -> dict:
    code = "import json, tensorflow as tf; print(json.dumps(dict(tf.sysconfig.get_build_info())))"
    result = docker_run(cli, image, "python", "-c", code)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_gpu_image_has_tensorflows_cuda_build_and_matching_libraries(built_images):
    info = tensorflow_build_info(built_images.cli, built_images.gpu)
    assert info["is_cuda_build"] is True
    check = docker_run(
        built_images.cli, built_images.gpu, "python", "/opt/simclr-kfp/containers/check_cuda.py"
    )
    assert check.returncode == 0, check.stderr[-2000:]
    assert f"built with CUDA {info['cuda_version']}, cuDNN {info['cudnn_version']}" in check.stdout


def test_cuda_check_fails_where_tensorflow_has_no_cuda(built_images):
    mounted = f"--volume={REPO / 'containers' / 'check_cuda.py'}:/check_cuda.py:ro"
    result = docker_run(
        built_images.cli, built_images.cpu, "python", "/check_cuda.py", options=(mounted,)
    )
    assert result.returncode == 1
    assert "is not a CUDA build" in result.stderr


def test_cuda_check_fails_without_cudnn(built_images):
    where = docker_run(
        built_images.cli,
        built_images.gpu,
        "python",
        "-c",
        "import nvidia; print(nvidia.__path__[0])",
    )
    cudnn_lib = f"{where.stdout.strip()}/cudnn/lib"
    result = docker_run(
        built_images.cli,
        built_images.gpu,
        "python",
        "/opt/simclr-kfp/containers/check_cuda.py",
        options=(f"--tmpfs={cudnn_lib}",),  # an empty directory over the cuDNN wheel's libraries
    )
    assert result.returncode == 1
    assert "libcudnn.so.9 is in none of TensorFlow's RUNPATH directories" in result.stderr


def test_gpu_image_without_a_gpu_refuses_to_pretrain(built_images):
    info = tensorflow_build_info(built_images.cli, built_images.gpu)
    result = docker_run(
        built_images.cli,
        built_images.gpu,
        "python",
        "-m",
        "simclr.tasks.pretrain",
        "--require_gpu",
        "--data_dir=/tmp/data",
        "--output_dir=/tmp/out",
        user="12345:0",
    )
    line = one_line_error(result)
    assert f"CUDA {info['cuda_version']}, cuDNN {info['cudnn_version']}" in line
    assert "NVIDIA driver not visible" in line
