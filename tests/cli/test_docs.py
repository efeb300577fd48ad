"""The README and --help agree: every command is documented and has help."""

from __future__ import annotations

import re
from pathlib import Path

from typer.main import get_command

from clerksync.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


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


def test_top_level_help_shows_exit_codes_settings_order_and_completion(cli) -> None:
    text = cli("--help").stdout
    for line in (
        "Exit codes:",
        "0  done",
        "1  the job or a check failed",
        "2  usage or configuration error",
        "1. the process environment",
        "2. .env.local, then .env",
        "--install-completion",
    ):
        assert line in text, line


def test_help_has_placeholders_not_types_and_whole_summaries(cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    groups = [(), *{(p.split()[0],) for p in command_paths() if " " in p}]
    for path in [*groups, *(tuple(p.split()) for p in command_paths())]:
        text = cli(*path, "--help").stdout
        assert not re.search(r"<(str|int|float|path|int range|float range)>", text), (path, text)
        summaries = text.split("Commands:", 1)[1] if "Commands:" in text else ""
        assert "..." not in summaries, (path, summaries)  # a summary cut mid-sentence


def test_readme_documents_what_help_says_about_exit_codes() -> None:
    section = README.read_text().split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    for code in ("| 0 |", "| 1 |", "| 2 |"):
        assert code in section
    assert "port" in section and "already in use" in section


def test_the_docs_list_every_key_of_reconcile_json() -> None:
    from clerksync.jobs.reconcile import ReconcileResult
    from clerksync.jobs.walk import KindSummary
    from clerksync.kinds.registry import KINDS

    text = " ".join((README.parent / "docs" / "bulk-jobs.md").read_text().split())
    listed = text.split("`reconcile --json` prints", 1)[1].split("Users are paged", 1)[0]
    # every kind reconcile can walk: those with a Backend API list (payment attempts have none)
    every = {k.name: KindSummary(note="n", prune_refused="r") for k in KINDS if k.listing}
    printed = ReconcileResult(every).to_json()
    keys = set(printed)
    keys |= {key for part in printed.values() if isinstance(part, dict) for key in part}
    missing = [k for k in sorted(keys) if f'"{k}"' not in listed and f"`{k}`" not in listed]
    assert missing == []


def test_the_license_pyproject_names_is_at_the_root() -> None:
    """pyproject said MIT and there was no LICENSE file."""
    root = README.parent
    declared = re.search(r'^license = "(.*)"$', (root / "pyproject.toml").read_text(), re.M)
    assert declared is not None
    text = (root / "LICENSE").read_text()
    assert declared.group(1) == "MIT" and text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in text
