"""Shared absl entry point: one-line errors and non-zero exits for bad input."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from absl import app, flags

from simclr.errors import UserError


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


def _fail(message: str) -> None:
    logging.shutdown()
    one_line = " ".join(str(message).split())
    print(f"error: {one_line}", file=sys.stderr, flush=True)
    sys.exit(2)
