"""One rule for turning a value from outside (a flag's text, a KFP parameter, a JSON
option) into a config field's type: int, float, bool, str, `tuple[X, ...]`, `X | None`.

The task CLIs (comma-list flags), the pod adapters (`*_options` dicts, which KFP hands
over as JSON, so ints arrive as floats) and `simclr-kfp submit`'s parameters all use it,
so a value means the same wherever it is given. TensorFlow- and KFP-free.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from simclr.errors import UserError

BOOLEAN_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_EXPECTED = {bool: "true or false", int: "an integer", float: "a number"}


def parse_bool(value: Any) -> bool:
    """true/false, 1/0, yes/no (any case) or a JSON boolean/number; ValueError otherwise
    (an unknown word is a mistake, not False)."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word not in BOOLEAN_WORDS:
            raise ValueError(f"not a boolean: {value!r}")
        return BOOLEAN_WORDS[word]
    if isinstance(value, (bool, int)) or (isinstance(value, float) and value in (0.0, 1.0)):
        return bool(value)
    raise ValueError(f"not a boolean: {value!r}")


def to_type(
    value: Any, annotation: Any, name: str = "value", error: type[UserError] = UserError
) -> Any:
    """`value` as `annotation`; `error("<name> must be <kind>, got <value>")` when it is
    not one. A tuple takes a sequence or a comma-separated string (blank items dropped)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        return to_type(value, non_none[0], name, error) if len(non_none) == 1 else value
    if annotation in (tuple, list) or origin in (tuple, list):
        items = value.split(",") if isinstance(value, str) else list(value)
        items = [i.strip() if isinstance(i, str) else i for i in items]
        item_type = args[0] if args else Any
        converted = [to_type(i, item_type, name, error) for i in items if i != ""]
        return tuple(converted) if (annotation is tuple or origin is tuple) else converted
    if annotation in _EXPECTED:
        try:
            return _scalar(value, annotation)
        except (TypeError, ValueError):
            raise error(f"{name} must be {_EXPECTED[annotation]}, got {value!r}") from None
    if annotation is str:
        return str(value)
    return value


def _scalar(value: Any, annotation: type) -> Any:
    if annotation is bool:
        return parse_bool(value)
    if isinstance(value, bool):  # True is not the integer 1 here
        raise ValueError
    if annotation is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        return int(value.strip() if isinstance(value, str) else value)
    return float(value)
