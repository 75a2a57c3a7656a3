"""A config field carries its default, help and rule (issue 18, item 1): the task's flags
and their validation come from it, for the task CLI and the pipeline's options alike."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest
from absl import flags
from simclr import knobs
from simclr.errors import UserError
from simclr.knobs import knob
from simclr.tasks import _app
from simclr_pipeline import adapters


@dataclasses.dataclass(kw_only=True)
class _Config:
    path: str = knob(help="Where.")
    rate: float = knob(0.1, "A rate.", above=0)
    copies: int = knob(0, "Copies.", at_least=0)
    grid: tuple[float, ...] = knob((0.5, 1.0), "A grid.", above=0)
    mode: str = knob("fast", "A mode.", choices=("fast", "slow"))
    limit: int | None = knob(None, "Optional.", at_least=1)


def _parse(argv: list[str]) -> _Config:
    values = flags.FlagValues()
    _app.define_dataclass_flags(_Config, flag_values=values)
    values(["prog", *argv])
    return _app.dataclass_from_flags(_Config, values)


def test_flags_carry_the_fields_default_help_and_type():
    values = flags.FlagValues()
    _app.define_dataclass_flags(_Config, flag_values=values)
    assert values["rate"].help == "A rate." and values["rate"].default == 0.1
    assert values["grid"].default == ["0.5", "1.0"]
    config = _parse(["--path=/d", "--grid=0.01, 2", "--copies=3"])
    assert config == _Config(path="/d", grid=(0.01, 2.0), copies=3)
    assert _parse(["--path=/d"]) == _Config(path="/d")


def test_the_flag_parser_refuses_what_the_field_cannot_hold():
    with pytest.raises(flags.IllegalFlagValueError):
        _parse(["--path=/d", "--mode=medium"])  # a choice: absl's enum
    with pytest.raises(UserError, match="--grid must be a number, got .x."):
        _parse(["--path=/d", "--grid=0.1,x"])
    with pytest.raises(UserError, match="--path is required"):
        _parse([])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rate": 0.0}, "--rate must be > 0, got 0"),
        ({"rate": math.nan}, "--rate must be > 0, got nan"),
        ({"copies": -1}, "--copies must be >= 0, got -1"),
        ({"grid": (1.0, -0.5)}, "--grid must be > 0, got 1,-0.5"),
        ({"grid": ()}, "--grid needs at least one value"),
        ({"mode": "medium"}, "--mode must be one of fast, slow, got 'medium'"),
        ({"limit": 0}, "--limit must be >= 1, got 0"),
    ],
)
def test_check_refuses_a_value_outside_its_rule(change, message):
    knobs.check(_Config(path="/d", limit=5))
    with pytest.raises(UserError) as refused:
        knobs.check(dataclasses.replace(_Config(path="/d"), **change))
    assert str(refused.value) == message


def test_pipeline_options_reach_the_same_field_types():
    """The adapters' coercion turns KFP's JSON (a comma string, ints as floats) into the
    field's type, so `knobs.check` sees what the CLI would have built."""
    kwargs = adapters.config_kwargs(_Config, {"path": "/d"}, {"grid": "0.1,1", "copies": 2.0})
    assert _Config(**kwargs) == _Config(path="/d", grid=(0.1, 1.0), copies=2)


@pytest.mark.parametrize(
    ("flag", "needle"),
    [
        ("--knn_k=0", "--knn_k must be > 0, got 0"),
        ("--knn_temperature=nan", "--knn_temperature must be > 0, got nan"),
        ("--linear_c_grid=0.1,-1", "--linear_c_grid must be > 0, got 0.1,-1"),
        ("--finetune_epochs=0", "--finetune_epochs must be >= 1, got 0"),
        ("--label_free_max_images=1", "--label_free_max_images must be >= 2, got 1"),
        ("--max_test_examples=-5", "--max_test_examples must be >= 0, got -5"),
    ],
)
def test_the_evaluate_task_refuses_a_bad_knob_before_reading_anything(tmp_path, flag, needle):
    paths = [f"--{name}={tmp_path}/{name}" for name in ("data_dir", "model_dir", "output_dir")]
    command = [sys.executable, "-m", "simclr.tasks.evaluate", *paths, flag]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == f"error: {needle}"
    assert not (tmp_path / "output_dir").exists()


@pytest.mark.parametrize(
    ("flag", "needle"),
    [
        ("--momentum=1", "--momentum must be < 1, got 1"),
        ("--seed=2147483648", "--seed must be < 2147483648, got 2147483648"),
        ("--width_multiplier=inf", "--width_multiplier must be > 0, got inf"),
        ("--warmup_epochs=-1", "--warmup_epochs must be >= 0, got -1"),
    ],
)
def test_the_pretrain_task_refuses_a_bad_knob_before_reading_anything(tmp_path, flag, needle):
    paths = [f"--{name}={tmp_path}/{name}" for name in ("data_dir", "output_dir")]
    command = [sys.executable, "-m", "simclr.tasks.pretrain", *paths, flag]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == f"error: {needle}"
    assert not (tmp_path / "output_dir").exists()


def test_every_policy_field_is_an_augment_flag_that_overrides_it():
    """The augment task's policy flags are derived from AugmentPolicy, so a new policy
    field is a flag at once, with the policy's help; each one reaches the policy."""
    from simclr.augment import AugmentPolicy
    from simclr.tasks import augment as task

    values = flags.FlagValues()
    _app.define_dataclass_flags(task.AugmentConfig, flag_values=values)
    for field in dataclasses.fields(AugmentPolicy):
        assert values[field.name].help.startswith(knobs.help_of(field)), field.name
        if isinstance(field.default, bool):
            wanted = not field.default
        elif isinstance(field.default, str):
            wanted = "v2"
        else:  # nudged inwards, so min <= max still holds
            wanted = field.default * (1.01 if field.name.endswith("_min") else 0.99)
        config = task.AugmentConfig(data_dir="", output_dir="out", **{field.name: wanted})
        policy = task.build_policy(config)
        assert getattr(policy, field.name) == wanted, field.name
        assert policy == dataclasses.replace(AugmentPolicy(), **{field.name: wanted})


def test_augment_refuses_a_bad_setting_in_one_line(tmp_path):
    paths = [f"--{name}={tmp_path}/{name}" for name in ("data_dir", "output_dir")]
    command = [sys.executable, "-m", "simclr.tasks.augment", *paths, "--views_per_image=0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "error: --views_per_image must be >= 1, got 0"
