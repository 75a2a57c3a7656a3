"""One place for each default, or a test that fails when a copy drifts.

The pipeline's run-time defaults live in `presets.GPU` (the pipeline signature reads
it; its pretrain values are PretrainConfig's own), the compile-time ones in
`PipelineOptions` (the CLI flags are built from it). Component signatures carry no
defaults. Checked here: that a compiled default reaches its task as the task's own
default, and what remains duplicated (the version and the Makefile).
"""

import dataclasses
import inspect
import re
import subprocess
from pathlib import Path

import pytest
import tomllib
from simclr.tasks.evaluate import EvaluateConfig
from simclr.tasks.prepare_data import PrepareDataConfig
from simclr.train_config import PretrainConfig
from simclr_pipeline import __version__, components, presets
from simclr_pipeline.adapters import config_kwargs
from simclr_pipeline.components import DEFAULT_IMAGE_REPO, DEFAULT_IMAGE_TAG
from simclr_pipeline.pipeline import build_pipeline
from simclr_pipeline.presets import PRETRAIN_KNOBS

REPO = Path(__file__).resolve().parents[1]
simclr_pipeline = build_pipeline()
COMPONENT_FUNCTIONS = [
    components.prepare_data,
    components.augment,
    components.pretrain,
    components.evaluate,
]


def _default(config_cls, name):
    return {f.name: f.default for f in dataclasses.fields(config_cls)}[name]


@pytest.mark.parametrize("func", COMPONENT_FUNCTIONS, ids=lambda f: f.__name__)
def test_components_take_every_value_from_the_pipeline(func):
    passed = set()
    for task in simclr_pipeline.pipeline_spec.root.dag.tasks.values():
        if task.component_ref.name == f"comp-{func.__name__.replace('_', '-')}":
            passed |= set(task.inputs.parameters) | set(task.inputs.artifacts)
    assert passed, func.__name__
    with_default = {
        name
        for name, p in inspect.signature(func).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    assert not (with_default & passed), "a default here would be a second copy"


def test_pipeline_signature_defaults_are_the_gpu_preset():
    defaults = {n: p.default for n, p in simclr_pipeline.component_spec.inputs.items()}
    scalars = {n: v for n, v in defaults.items() if not isinstance(v, dict)}
    assert scalars == {n: presets.GPU[n] for n in scalars}


@pytest.mark.parametrize("name", PRETRAIN_KNOBS)
def test_each_pretrain_knob_is_a_pipeline_parameter_that_reaches_pretrain(name):
    # The pipeline declares none of them but seed: _with_pretrain_knobs adds each from
    # the component's signature, with PretrainConfig's default (GPU's where it differs).
    inputs = simclr_pipeline.component_spec.inputs
    assert name in inputs
    assert inputs[name].default == presets.GPU[name]
    if name != "seed":  # seed is the pipeline's own (prepare_data and augment take it)
        assert presets.GPU[name] == _default(PretrainConfig, name)
    tasks = simclr_pipeline.pipeline_spec.root.dag.tasks
    wired = tasks["pretrain"].inputs.parameters[name].component_input_parameter
    assert wired == name


@pytest.mark.parametrize(
    "parameter, config_cls, field",
    [
        ("eval_protocols", EvaluateConfig, "protocols"),
        ("baseline", EvaluateConfig, "baseline"),
        ("source", PrepareDataConfig, "source"),
        ("seed", PrepareDataConfig, "seed"),
        ("label_fractions", PrepareDataConfig, "label_fractions"),
    ],
)
def test_a_pipeline_default_reaches_its_task_as_the_tasks_default(parameter, config_cls, field):
    """The compiled parameter's default, as the pod's adapter coerces it (a comma string
    for a tuple field), is the task config's own default."""
    compiled = simclr_pipeline.component_spec.inputs[parameter].default
    arrived = config_kwargs(config_cls, {field: compiled}, {})[field]
    assert arrived == _default(config_cls, field)


def test_num_shards_and_image_size_are_the_archive_defaults():
    # PrepareDataConfig.num_shards is None: 16 for the archive, the TFRecord guide's rule
    # for image sources (simclr.images.IngestOptions).
    from simclr.tasks.prepare_data import CIFAR_IMAGE_SIZE, CIFAR_NUM_SHARDS

    assert _default(PrepareDataConfig, "num_shards") is None
    assert presets.GPU["num_shards"] == CIFAR_NUM_SHARDS
    # image_size unset is 32, the archive's size (and the pipeline's default)
    assert _default(PrepareDataConfig, "image_size") is None
    assert presets.GPU["image_size"] == CIFAR_IMAGE_SIZE


def test_version_has_one_value():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert __version__ == pyproject
    assert DEFAULT_IMAGE_TAG.startswith(f"{pyproject}-g")  # + the commit (source_tag.py)
    # The fallback for an uninstalled source tree is a literal: keep it in step too.
    init = (REPO / "pipelines" / "simclr_pipeline" / "__init__.py").read_text()
    assert re.search(r'__version__ = "([^"]+)"', init).group(1) == pyproject


def test_makefile_image_defaults_are_the_cli_defaults():
    out = subprocess.run(
        ["make", "-n", "compile"], cwd=REPO, capture_output=True, text=True, timeout=60
    ).stdout
    assert f"--image_repo={DEFAULT_IMAGE_REPO} " in out
    assert f"--image_tag={DEFAULT_IMAGE_TAG}" in out
