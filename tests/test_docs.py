"""The README and --help agree: every command is documented and has help."""

from __future__ import annotations

import re
from pathlib import Path

from typer.main import get_command

from clerksync.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"


def command_paths() -> dict[str, object]:
    root = get_command(app)
    paths: dict[str, object] = {}
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        sub = getattr(command, "commands", None)
        if sub:
            for sub_name, sub_command in sub.items():
                paths[f"{name} {sub_name}"] = sub_command
        else:
            paths[name] = command
    return paths


def readme_commands() -> set[str]:
    text = README.read_text()
    section = text.split("## Commands", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `clerksync ([a-z-]+(?: [a-z-]+)?)", section, re.MULTILINE))


def test_readme_lists_exactly_the_commands_of_the_cli() -> None:
    assert readme_commands() == set(command_paths())


def test_every_command_has_help() -> None:
    for path, command in command_paths().items():
        assert (command.help or "").strip(), f"`clerksync {path}` has no help"  # type: ignore[attr-defined]


def test_help_lists_every_command(cli) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for name in {p.split()[0] for p in command_paths()}:
        assert name in result.stdout
