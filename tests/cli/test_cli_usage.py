"""A mistyped command or option inside a subcommand is a usage error: click's message, exit 2.

Newer typer releases raise these from a copy of click they bundle; they were once taken for
a bug in clerksync (exit 1, "unexpected NoSuchOption"). Run as a user runs it: the installed
console entry point, in its own process.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["users", "list", "--limt", "5"], "No such option: --limt"),
        (["users", "lst"], "No such command 'lst'"),
        (["users", "list", "--limit", "abc"], "Invalid value for '--limit'"),
        (["event", "list"], "No such command 'event'"),
        (["send"], "Missing argument 'EVENT'"),
        (["serve", "--port", "99999"], "Invalid value for '--port'"),
        (["events", "tail", "--interval", "0"], "Invalid value for '--interval'"),
    ],
)
def test_a_usage_mistake_in_a_subcommand_exits_2_with_clicks_message(
    args: list[str], says: str, tmp_path: object
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "clerksync", *args],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert "unexpected" not in done.stderr and "Traceback" not in done.stderr
