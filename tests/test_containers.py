"""The Dockerfiles and .dockerignore, read as text (no Docker engine here)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = {
    "cpu": REPO / "containers" / "Dockerfile.cpu",
    "gpu": REPO / "containers" / "Dockerfile.gpu",
}
SECRET_WORDS = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)


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


def pinned_names() -> set[str]:
    names = set()
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            names.add(re.sub(r"[-_.]+", "-", line.split("==")[0]).lower())
    return names


@pytest.mark.parametrize(
    "kind, base",
    [("cpu", "python:3.11-slim"), ("gpu", "tensorflow/tensorflow:2.21.0-gpu")],
)
def test_base_image(kind, base):
    froms = [args for op, args in instructions(DOCKERFILES[kind]) if op == "FROM"]
    assert froms == [base]


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_runs_as_non_root(kind):
    users = [args for op, args in instructions(DOCKERFILES[kind]) if op == "USER"]
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in ("root", "0")


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
        if re.search(r"\bpip3? install\b", cmd)
    ]
    assert installs
    for cmd in installs:
        assert "-c constraints.txt" in cmd or "--no-deps ." in cmd, cmd
        # nothing named on the command line except the local package
        words = cmd.split("install", 1)[1].split()
        loose = [w for w in words if not w.startswith("-") and w not in (".", "constraints.txt")]
        assert all(w.startswith("/tmp/requirements") for w in loose), cmd


def test_gpu_image_keeps_its_cuda_tensorflow():
    text = DOCKERFILES["gpu"].read_text()
    assert "--exclude tensorflow-cpu" in text
    assert "is_built_with_cuda" in text


@pytest.mark.parametrize(
    "extras, exclude",
    [("train,pipeline", []), ("train,pipeline", ["--exclude", "tensorflow-cpu", "--add", "keras"])],
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
    names = [
        re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.\-]+", r).group(0)).lower()
        for r in result.stdout.splitlines()
        if r.strip()
    ]
    assert "kfp" in names and "absl-py" in names
    assert ("tensorflow-cpu" in names) == (not exclude)
    assert set(names) <= pinned_names()


def test_dockerignore_keeps_the_context_small():
    patterns = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "runs", "build", ".git", "tests"} <= patterns
    needed = ("pyproject.toml", "constraints.txt", "README.md", "components", "pipelines")
    assert not patterns & set(needed)
