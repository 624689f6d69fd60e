"""Helpers for the tests that call the command line in-process (app.cli.main)."""

from __future__ import annotations

import pytest

from app.cli import main


def run_cli(args: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `python -m app.cli ARGS`, run in this process."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def error_lines(err: str) -> list[str]:
    """The 'error: ...' lines the CLI printed."""
    return [line for line in err.splitlines() if line.startswith("error:")]
