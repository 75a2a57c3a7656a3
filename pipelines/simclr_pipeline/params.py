"""Pipeline parameters from the command line: presets, a JSON file, `--param key=value`.

Values are converted to the types the pipeline declares (read from a built pipeline
or from a compiled package), so `--param epochs=5` arrives as the integer 5 and a
misspelt name fails before anything is submitted.
"""

import json
from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from simclr import coerce
from simclr.errors import UserError


class ParamError(UserError):
    """Bad parameter input; the message is one line."""


def package_parameter_types(package_path: str) -> dict[str, str]:
    """Parameter name -> KFP type name, from a compiled pipeline YAML."""
    try:
        with open(package_path) as f:
            spec = next(yaml.safe_load_all(f), None)
    except OSError as err:
        raise ParamError(f"cannot read pipeline package {package_path}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ParamError(f"{package_path} is not a compiled pipeline (YAML error)") from err
    if not isinstance(spec, dict) or "root" not in spec:
        raise ParamError(f"{package_path} is not a compiled KFP pipeline (no 'root')")
    params = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    return {name: p.get("parameterType", "STRING") for name, p in params.items()}


def parse_assignments(assignments: Iterable[str]) -> dict[str, str]:
    """`["epochs=5", "encoder=resnet18"]` -> `{"epochs": "5", "encoder": "resnet18"}`."""
    result = {}
    for item in assignments:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ParamError(f"--param expects key=value, got {item!r}")
        result[key.strip()] = value
    return result


def load_params_file(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as err:
        raise ParamError(f"cannot read --params_file {path}: {err.strerror}") from err
    except json.JSONDecodeError as err:
        raise ParamError(
            f"--params_file {path} is not valid JSON: {err.msg} (line {err.lineno})"
        ) from err
    if not isinstance(data, dict):
        raise ParamError(f"--params_file {path} must hold a JSON object of parameter values")
    return data


def coerce_parameters(values: Mapping[str, Any], types: Mapping[str, str]) -> dict[str, Any]:
    """Checks names against the pipeline and converts each value to its declared type."""
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ParamError(
            f"unknown pipeline parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(types))}"
        )
    return {name: _coerce(name, value, types[name]) for name, value in values.items()}


_SCALARS = {"NUMBER_INTEGER": int, "NUMBER_DOUBLE": float, "BOOLEAN": bool}


def _coerce(name: str, value: Any, kind: str) -> Any:
    """A value for a parameter of KFP type `kind`: scalars by `simclr.coerce`'s rule (the
    tasks' and adapters' own), dicts and lists from JSON, strings as given."""
    if kind in _SCALARS:
        return coerce.to_type(value, _SCALARS[kind], f"parameter {name}", ParamError)
    if kind not in ("STRUCT", "LIST"):
        return value if isinstance(value, str) else json.dumps(value)
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict if kind == "STRUCT" else list):
        expected = "a JSON object" if kind == "STRUCT" else "a JSON list"
        raise ParamError(f"parameter {name} must be {expected}, got {value!r}")
    return parsed


def merge_parameters(
    preset: Mapping[str, Any] | None,
    params_file: str | None,
    assignments: Iterable[str],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Later sources win: preset < --params_file < --param < explicit flags (e.g. --source)."""
    merged: dict[str, Any] = dict(preset or {})
    if params_file:
        merged.update(load_params_file(params_file))
    merged.update(parse_assignments(assignments))
    merged.update({k: v for k, v in (extra or {}).items() if v is not None})
    return merged
