"""One coercer (simclr.coerce): a value means the same as a task flag, a component's
`*_options` entry and a `simclr-kfp submit --param`."""

import dataclasses

import pytest
from absl import flags
from simclr import coerce
from simclr.errors import UserError
from simclr.tasks._app import dataclass_from_flags, define_dataclass_flags
from simclr_pipeline import adapters, params


@dataclasses.dataclass
class _Config:
    fractions: tuple[float, ...] = (0.5,)
    steps: tuple[int, ...] = (1,)


def _from_flag(name: str, text: str):
    values = flags.FlagValues()
    define_dataclass_flags(_Config, flag_values=values)
    values(["prog", f"--{name}={text}"])
    return getattr(dataclass_from_flags(_Config, values), name)


def _from_options(name: str, value):
    return adapters.config_kwargs(_Config, {}, {name: value})[name]


@pytest.mark.parametrize(
    "name, text, expected",
    [("fractions", "0.01, 0.1", (0.01, 0.1)), ("steps", "3,4,", (3, 4))],
)
def test_a_comma_list_is_the_same_tuple_as_a_flag_and_as_an_option(name, text, expected):
    assert _from_flag(name, text) == _from_options(name, text) == expected


@pytest.mark.parametrize("name, text", [("fractions", "0.1,ten"), ("steps", "1,2.5")])
def test_a_bad_item_is_the_same_error_as_a_flag_and_as_an_option(name, text):
    with pytest.raises(UserError) as flag_error:
        _from_flag(name, text)
    with pytest.raises(adapters.AdapterError) as option_error:
        _from_options(name, text)
    bad = text.split(",")[-1]
    assert str(flag_error.value) == f"--{str(option_error.value)}"
    assert str(option_error.value).endswith(f"got {bad!r}")


@pytest.mark.parametrize(
    "value, kind, expected",
    [("yes", bool, True), ("0", bool, False), (4.0, int, 4), ("7", int, 7), ("2e-3", float, 0.002)],
)
def test_a_pipeline_parameter_and_an_option_convert_alike(value, kind, expected):
    name = {bool: "BOOLEAN", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE"}[kind]
    assert params.coerce_parameters({"p": value}, {"p": name}) == {"p": expected}
    assert coerce.to_type(value, kind) == expected


@pytest.mark.parametrize(
    "value, kind", [("maybe", bool), ("off", bool), (2.5, int), (True, int), (True, float)]
)
def test_what_one_path_refuses_every_path_refuses(value, kind):
    name = {bool: "BOOLEAN", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE"}[kind]
    with pytest.raises(params.ParamError, match=f"parameter p must be .*, got {value!r}"):
        params.coerce_parameters({"p": value}, {"p": name})
    with pytest.raises(UserError, match=f"p must be .*, got {value!r}"):
        coerce.to_type(value, kind, "p")
