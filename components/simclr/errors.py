"""The one exception type that means "the user's input is wrong", and the one place that
turns it into what users see: a single line `error: <reason>` on stderr and exit code 2.

Tasks, the pipeline's adapters (inside the pod) and the CLIs all report through here, so
the line and the code are the same wherever a mistake is caught.
"""

from __future__ import annotations

import functools
import sys
import typing
from collections.abc import Callable

EXIT_CODE = 2


class UserError(Exception):
    """Bad input, reported to the user as one line and a non-zero exit.

    Raise it with a message that names the offending flag, file or URI, e.g.
    ``UserError("--temperature must be > 0, got -1")``. The pipeline's own errors
    (parameters, platforms, submission) subclass it.
    """


def one_line(reason: object) -> str:
    """`reason` (an exception or a message) with its whitespace and newlines collapsed."""
    return " ".join(str(reason).split())


def report(reason: object) -> int:
    """Prints `error: <reason>` as one line on stderr; returns the exit code for it."""
    print(f"error: {one_line(reason)}", file=sys.stderr, flush=True)
    return EXIT_CODE


def exit_for(reason: object) -> typing.NoReturn:
    """Reports `reason` and ends the process with exit code 2, without a traceback."""
    raise SystemExit(report(reason)) from None


_F = typing.TypeVar("_F", bound=Callable[..., typing.Any])


def exits_on_user_error(func: _F) -> _F:
    """Wraps an entry point: a `UserError` raised inside it ends the process with
    `exit_for` (one line, exit 2) instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:
        try:
            return func(*args, **kwargs)
        except UserError as err:
            exit_for(err)

    return typing.cast(_F, wrapper)
