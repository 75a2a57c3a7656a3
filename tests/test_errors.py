"""One user-error type and one printer (issue 18): whichever layer catches a user's
mistake, the user sees `error: <reason>` on one line and exit code 2; a bug is not
swallowed into that line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from simclr import errors
from simclr.errors import UserError
from simclr_pipeline import adapters, cli, local_run, params, platforms, submit


@errors.exits_on_user_error
def _entry(exc: BaseException | None) -> str:
    if exc is not None:
        raise exc
    return "ran"


def test_a_user_error_is_one_line_and_exit_2(capsys):
    assert _entry(None) == "ran"
    with pytest.raises(SystemExit) as stopped:
        _entry(UserError("--epochs must be >= 1,\n  got 0"))
    assert stopped.value.code == 2
    assert capsys.readouterr().err == "error: --epochs must be >= 1, got 0\n"


def test_a_bug_is_not_reported_as_the_users_mistake(capsys):
    with pytest.raises(KeyError):
        _entry(KeyError("x"))
    assert "error:" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "error_type",
    [
        adapters.AdapterError,
        cli.CliError,
        local_run.LocalRunError,
        params.ParamError,
        platforms.PlatformError,
        submit.SubmitError,
    ],
)
def test_the_pipelines_errors_reach_the_same_printer(error_type, capsys):
    with pytest.raises(SystemExit) as stopped:
        _entry(error_type("bad\nthing"))
    assert stopped.value.code == 2 and capsys.readouterr().err == "error: bad thing\n"


def test_every_command_line_prints_the_same_line():
    """The task CLI (absl), the pipeline CLI (argparse) and the bench front door, each
    with a mistake of its own: one line each, the same form, exit 2."""
    commands = [
        [
            sys.executable,
            "-m",
            "simclr.tasks.augment",
            "--data_dir=/nonexistent",
            "--output_dir=/x",
        ],
        [sys.executable, "-m", "simclr_pipeline.cli", "params", "--param=batch_size=big"],
        [sys.executable, "-m", "simclr.bench", "--only=nonesuch"],
    ]
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, (command, done.stderr[-500:])
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and done.stderr.count("error: ") == 1, done.stderr
        assert "Traceback" not in done.stderr
