"""The command reference, made from the Typer app itself: the docs' command pages are each
command's ``--help`` as the app prints it (``docs/hooks/reference.py`` writes them at build
time), so the reference cannot drift from ``--help``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

#: the width the reference is rendered at (click caps help at 80 columns anyway)
WIDTH = "80"


@dataclass(frozen=True)
class CommandPage:
    """One command: its path (``users list``), one-line summary and ``--help`` text."""

    path: str
    summary: str
    help: str

    @property
    def slug(self) -> str:
        return self.path.replace(" ", "-")

    def markdown(self, see_also: str = "") -> str:
        fence = "```"
        text = (
            f"# clerksync {self.path}\n\n{self.summary}\n\n"
            "<!-- made from the command's --help by docs/hooks/reference.py: edit the "
            "docstring, not this page -->\n\n"
            f"{fence}text\n{self.help.rstrip()}\n{fence}\n"
        )
        return text + (f"\n{see_also}\n" if see_also else "")


@contextmanager
def _width() -> Iterator[None]:
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved


def help_text(*path: str) -> str:
    """``clerksync PATH --help`` as the app prints it, at ``WIDTH`` columns."""
    from typer.testing import CliRunner

    from clerksync.cli import app

    with _width():
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": WIDTH})
    assert result.exit_code == 0, result.output
    return str(result.stdout)


def command_pages() -> list[CommandPage]:
    """Every command (a group's subcommands, not the group), in the app's order."""
    from typer.main import get_command

    from clerksync.cli import app

    root: Any = get_command(app)
    pages = []
    for name, command in root.commands.items():
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for sub_name, sub in subcommands.items():
                path = f"{name} {sub_name}"
                pages.append(CommandPage(path, _summary(sub), help_text(name, sub_name)))
        else:
            pages.append(CommandPage(name, _summary(command), help_text(name)))
    return pages


def _summary(command: Any) -> str:
    return str(command.short_help or (command.help or "").strip().split("\n")[0]).strip()
