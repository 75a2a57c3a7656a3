"""A config field that carries its own default, help text and rule.

`knob(...)` is a `dataclasses.field` whose metadata holds the help and the range or choice
rule, so one line declares what the task's flag, its validation and the pipeline's
forwarding all derive from (`simclr.tasks._app` builds the flags; `check` validates):

    knn_k: int = knob(200, "Neighbours for the kNN classifier.", above=0)

TensorFlow-free: configs are built and checked before any TensorFlow module is imported.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Sequence
from typing import Any

from simclr.errors import UserError

HELP, ABOVE, AT_LEAST, BELOW, AT_MOST = "help", "above", "at_least", "below", "at_most"
CHOICES, EMPTY_OK = "choices", "empty_ok"


def knob(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
    choices: Sequence[str] | None = None,
    empty_ok: bool = False,
) -> Any:
    """A dataclass field with `default` and its flag's `help`. `above` (> bound),
    `at_least` (>= bound), `below` (< bound) and `at_most` (<= bound) bound a number, or
    every item of a tuple, which must then also be finite and, unless `empty_ok`, hold
    at least one item; `choices` lists the allowed values of a string. None (an optional
    field left unset) is always allowed."""
    metadata: dict[str, Any] = {HELP: help}
    if above is not None:
        metadata[ABOVE] = above
    if at_least is not None:
        metadata[AT_LEAST] = at_least
    if below is not None:
        metadata[BELOW] = below
    if at_most is not None:
        metadata[AT_MOST] = at_most
    if empty_ok:
        metadata[EMPTY_OK] = True
    if choices is not None:
        metadata[CHOICES] = tuple(choices)
    return dataclasses.field(default=default, metadata=metadata)


def help_of(field: dataclasses.Field) -> str:
    return field.metadata.get(HELP, "")


def choices_of(field: dataclasses.Field) -> tuple[str, ...] | None:
    return field.metadata.get(CHOICES)


def check(config: Any) -> None:
    """Raises UserError naming the flag for the first field of `config` whose value
    breaks its knob's rule."""
    for field in dataclasses.fields(config):
        problem = _problem(field, getattr(config, field.name))
        if problem:
            raise UserError(f"--{field.name} {problem}")


def _problem(field: dataclasses.Field, value: Any) -> str | None:
    rules = field.metadata
    if value is None:
        return None
    if CHOICES in rules and value not in rules[CHOICES]:
        return f"must be one of {', '.join(rules[CHOICES])}, got {value!r}"
    bounds = [(rule, rules[rule]) for rule in (ABOVE, AT_LEAST, BELOW, AT_MOST) if rule in rules]
    if not bounds:
        return None
    items = value if isinstance(value, tuple) else (value,)
    if not items:
        return None if rules.get(EMPTY_OK) else "needs at least one value"
    for item in items:
        for rule, bound in bounds:
            if not (math.isfinite(item) and _OPS[rule](item, bound)):
                return f"must be {_SIGNS[rule]} {_number(bound)}, got {_shown(value)}"
    return None


_OPS = {ABOVE: operator.gt, AT_LEAST: operator.ge, BELOW: operator.lt, AT_MOST: operator.le}
_SIGNS = {ABOVE: ">", AT_LEAST: ">=", BELOW: "<", AT_MOST: "<="}


def _shown(value: Any) -> str:
    return ",".join(map(_number, value)) if isinstance(value, tuple) else _number(value)


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"
