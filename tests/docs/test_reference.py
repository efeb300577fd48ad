"""The command reference is made from the Typer app: every command has a page, and the page
is its ``--help``; the README stays a front door and lists exactly the CLI's commands."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.cli.test_docs import README, command_paths

MODEL = "docs/examples/mongoose/models/User.js"
HOOK = Path(__file__).resolve().parents[2] / "docs" / "hooks" / "reference.py"


def hook():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("docs_reference_hook", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_command_has_a_page_and_the_index_lists_it() -> None:
    pages = hook().command_markdown()
    for path in command_paths():
        slug = path.replace(" ", "-")
        assert f"commands/{slug}.md" in pages, path
        assert f"({slug}.md)" in pages["commands/index.md"], path
    assert len(pages) == len(command_paths()) + 1


def test_each_command_page_is_its_help(cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    pages = hook().command_markdown()
    for path in command_paths():
        shown = cli(*path.split(), "--help").stdout.rstrip()
        assert shown in pages[f"commands/{path.replace(' ', '-')}.md"], path


def test_the_nav_lists_every_command_page() -> None:
    config = {"nav": [{"Reference": [{"Commands": "commands/index.md"}]}]}
    hook().on_config(config)
    listed = config["nav"][0]["Reference"][0]["Commands"]
    assert len(listed) == len(command_paths()) + 1


def test_the_readme_is_a_front_door() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 220
    for journey in ("nextjs-mongoose", "fastapi-beanie", "other-model"):
        assert f"docs/journeys/{journey}.md" in text
    for install in ("pip install clerksync", "pipx install clerksync", "uvx clerksync doctor"):
        assert install in text
    assert "**Contents:**" in text  # it had no table of contents
    # the quick start's two commands on a fresh machine (the demo on the embedded store, the
    # tests CI runs), then the app's two, before any detail (SCRAM, folder modes, the GPL)
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    first = quick.split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first.splitlines()] == [["make", "demo"], ["make", "test"]]
    assert "clerksync doctor" in quick and "clerksync serve" in quick
    assert not any(word in quick for word in ("SCRAM", "0700", "GPL", ".venv/bin"))
    # the guide's Mongoose model is shown (it was named throughout, never shown)
    journey = (README.parent / "docs" / "journeys" / "nextjs-mongoose.md").read_text()
    assert '--8<-- "examples/mongoose/models/User.js"' in journey
    assert "new mongoose.Schema(" in (README.parent / MODEL).read_text()
    # command-table cells are a line, not paragraphs
    rows = [line for line in text.splitlines() if line.startswith("| `clerksync ")]
    assert rows and all(len(row) <= 100 for row in rows)


def test_the_schema_page_shows_the_documents_clerksync_writes() -> None:
    module = hook()
    page = (HOOK.parents[1] / "schema.md").read_text()
    shown = module.on_page_markdown(page, None, None, None)
    assert '"clerkId": "user_2abc"' in shown and '"clerk_user_id": "user_2abc"' in shown
    assert "<!-- clerksync:document" not in shown


def test_the_docs_pages_the_code_names_exist() -> None:
    """What doctor, errors and docstrings point a user to: README sections that moved into
    ``docs/`` were still named after the README became a front door."""
    import re

    root = README.parent
    named = set()
    for source in (root / "clerksync").rglob("*.py"):
        text = source.read_text()
        assert 'README, "' not in text, f"{source}: names a README section"
        named |= set(re.findall(r"docs/[\w/-]+\.md", text))
    assert named, "no docs page named"
    for page in named:
        assert (root / page).is_file(), page


def test_the_index_links_every_page() -> None:
    """A page added for a topic is reachable from the index, not only from the nav."""
    docs = README.parent / "docs"
    index = (docs / "index.md").read_text()
    pages = [p.relative_to(docs).as_posix() for p in docs.rglob("*.md")]
    pages = [p for p in pages if p != "index.md" and not p.startswith(("hooks/", "examples/"))]
    assert pages
    for page in pages:
        assert f"]({page})" in index, page
