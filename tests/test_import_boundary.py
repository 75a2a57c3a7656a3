"""The TensorFlow-free line, drawn once (issue 18): the policy, configs, errors,
coercion, storage and cluster modules never import TensorFlow; the modules that use it
import it at the top; a task imports those only after its flags are validated, so a bad
flag is one line and exit 2 without loading TensorFlow (seconds, not a TF start-up)."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "components" / "simclr"

# A meta-path finder that refuses TensorFlow, Keras and TensorBoard, then runs the code
# given after it; any import of those fails loudly instead of loading them.
BLOCKER = textwrap.dedent(
    """
    import sys
    class BlockTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "keras", "tensorboard"):
                raise ImportError(f"imported {name}")
            return None
    sys.meta_path.insert(0, BlockTensorFlow())
    """
)

TF_FREE = (
    "simclr.errors",
    "simclr.knobs",
    "simclr.coerce",
    "simclr.lazy",
    "simclr.tfexample",
    "simclr.cluster",
    "simclr.storage",
    "simclr.storage.gcs",
    "simclr.storage.s3",
    "simclr.train_config",
    "simclr.augment",
    "simclr.augment.policy",
    "simclr.train_setup",
    "simclr.data",
    "simclr.embeddings",
    "simclr.images",
    "simclr.images.options",
    "simclr.cifar",
    "simclr.tasks._app",
    "simclr_pipeline.pipeline",
    "simclr_pipeline.adapters",
)


def _run_blocked(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_the_tensorflow_free_modules_import_without_it():
    code = "import importlib\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    result = _run_blocked(code, *TF_FREE)
    assert result.returncode == 0, result.stderr[-1500:]


# One bad value per task, each refused by its config's knob rules before any TF import.
BAD_FLAGS = {
    "pretrain": ["--data_dir=/d", "--output_dir=/o", "--temperature=0"],
    "augment": ["--data_dir=/d", "--output_dir=/o", "--flip_prob=2"],
    "evaluate": ["--data_dir=/d", "--model_dir=/m", "--output_dir=/o", "--gallery_queries=0"],
    "embed": ["--data_dir=/d", "--model_dir=/m", "--output_dir=/o", "--batch_size=0"],
    "prepare_data": ["--output_dir=/o", "--test_fraction=2"],
}


@pytest.mark.parametrize("task", sorted(BAD_FLAGS))
def test_a_bad_flag_is_one_line_without_loading_tensorflow(task):
    code = f"from simclr.tasks import {task}\n{task}.main(['{task}', *sys.argv[1:]])\n"
    result = _run_blocked(code, *BAD_FLAGS[task])
    assert result.returncode == 2, result.stderr[-1500:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-1500:]
    assert "imported" not in result.stderr


def test_tasks_import_tensorflow_only_through_the_core():
    """A task's own code holds no TensorFlow: it is flags over `simclr`'s modules."""
    for path in sorted((CORE / "tasks").glob("*.py")):
        tensorflow = [m for m in _imports(path) if m.split(".")[0] in ("tensorflow", "keras")]
        assert not tensorflow, f"tasks/{path.name} imports {tensorflow}"


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return names


def _function_level_imports(path: Path) -> list[str]:
    """`module` of each import statement inside a function of `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    found += [alias.name for alias in inner.names]
                elif isinstance(inner, ast.ImportFrom):
                    found.append(inner.module or "")
    return found


# Tasks are the entry points: they check their flags first, then import the TensorFlow
# modules (the bad-flag test above keeps that order); every other module that uses
# TensorFlow imports it at its top.
MODULES = sorted(p for p in CORE.rglob("*.py") if p.parent.name != "tasks")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_tensorflow_is_imported_at_the_top_of_a_module(path):
    late = [m for m in _function_level_imports(path) if m.split(".")[0] in ("tensorflow", "keras")]
    assert not late, f"{path.name} imports {late} inside a function"
