"""Shared absl plumbing: dataclass <-> flags, one-line errors and non-zero exits for bad input."""

from __future__ import annotations

import dataclasses
import logging
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from absl import app, flags

from simclr import coerce, errors, knobs
from simclr.errors import UserError

# Flags defined through define_dataclass_flags belong to its caller (e.g. simclr.tasks.augment,
# or the script path under `python -m`), as if the caller had called DEFINE_* itself.
flags.disclaim_key_flags()

_T = TypeVar("_T")
_DEFINERS: dict[type, Callable[..., Any]] = {
    bool: flags.DEFINE_boolean,
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    str: flags.DEFINE_string,
}


def define_dataclass_flags(
    config_cls: type,
    *,
    flag_values: flags.FlagValues = flags.FLAGS,
) -> None:
    """Defines one absl flag per field of the dataclass `config_cls`: same name and default.

    The flag's type follows the field's annotation (bool, int, float or str; `X | None`
    counts as X; a `tuple[X, ...]` is a comma-separated list), or it is an enum of the
    field's `knob` choices; its help text is the knob's. A field without a default is required: its flag defaults to None and
    `dataclass_from_flags` rejects it when unset. Names already in `flag_values` (another
    task in this process defined them) are skipped.
    """
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        name = field.name
        if name in flag_values:
            continue
        default = None if _required(field) else _default(field)
        text = knobs.help_of(field)
        choices = knobs.choices_of(field)
        if choices:
            flags.DEFINE_enum(name, default, list(choices), text, flag_values=flag_values)
            continue
        kind = _flag_type(hints[name])
        if _item_type(kind) is not None:
            shown = None if default is None else [str(v) for v in default]
            flags.DEFINE_list(name, shown, text, flag_values=flag_values)
            continue
        if kind not in _DEFINERS:
            raise TypeError(f"{config_cls.__name__}.{name}: no absl flag type for {hints[name]}")
        _DEFINERS[kind](name, default, text, flag_values=flag_values)


def dataclass_from_flags(config_cls: type[_T], flag_values: flags.FlagValues) -> _T:
    """The `config_cls` holding the values of the flags `define_dataclass_flags` defined.

    Raises UserError("--NAME is required") for the first field without a default whose
    flag is unset or empty, and for a list item that is not of the field's item type.
    """
    fields = dataclasses.fields(config_cls)
    hints = typing.get_type_hints(config_cls)
    for field in fields:
        # getattr (unlike .value) refuses to read flags that were never parsed.
        if _required(field) and not getattr(flag_values, field.name):
            raise UserError(f"--{field.name} is required")
    values = {}
    for field in fields:
        value = flag_values[field.name].value
        item_type = _item_type(_flag_type(hints[field.name]))
        if item_type is not None and value is not None:  # a comma list: absl gives strings
            value = coerce.to_type(value, tuple[item_type, ...], f"--{field.name}")
        values[field.name] = value
    return config_cls(**values)


def _item_type(annotation: Any) -> type | None:
    """X for `tuple[X, ...]`, else None."""
    if typing.get_origin(annotation) is tuple:
        return typing.get_args(annotation)[0]
    return None


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _flag_type(annotation: Any) -> Any:
    """`X | None` / `Optional[X]` -> X; anything else unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def run_task(
    define_flags: Callable[[], None],
    config_from_flags: Callable[[flags.FlagValues], Any],
    run: Callable[[Any], Any],
    argv: list[str] | None = None,
) -> None:
    """Defines the task's flags, parses argv, builds the config and runs it.

    A `UserError` (or a flag that fails validation) ends the process with exit code 2
    and a single line on stderr, `error: <reason>`; nothing is printed as a traceback.
    """
    define_flags()

    def _main(_argv: list[str]) -> None:
        if len(_argv) > 1:
            _fail(f"unexpected positional arguments: {' '.join(_argv[1:])}")
        try:
            config = config_from_flags(flags.FLAGS)
            run(config)
        except UserError as err:
            _fail(str(err))

    try:
        app.run(_main, argv=argv if argv is not None else sys.argv, flags_parser=_parse_flags)
    except UserError as err:  # pragma: no cover - raised before app.run's own handler
        _fail(str(err))


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        _fail(str(err).splitlines()[0])
        raise  # unreachable


def _fail(message: str) -> typing.NoReturn:
    logging.shutdown()  # flush the task's log first: the error stays the last line
    errors.exit_for(message)
