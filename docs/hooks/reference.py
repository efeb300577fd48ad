"""MkDocs hook: the pages made from the code at build time, so they cannot drift from it.

- ``commands/<command>.md``: each command's ``--help`` as the app prints it
  (``clerksync.cli.reference``), and ``commands/index.md`` listing them all;
- ``<!-- clerksync:document PRESET -->`` in a page: the document clerksync writes for a new
  Clerk user under that preset, made by the same code the receiver writes with.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from mkdocs.structure.files import File

#: the topic page that explains each command (the command page links to it)
TOPICS = {
    "doctor": ("Doctor", "../doctor.md"),
    "sync-metadata": ("Bulk jobs", "../bulk-jobs.md"),
    "promote": ("Bulk jobs", "../bulk-jobs.md"),
    "demote": ("Bulk jobs", "../bulk-jobs.md"),
    "reconcile": ("Bulk jobs", "../bulk-jobs.md"),
    "serve": ("The receiver", "../receiver.md"),
    "send": ("The receiver", "../receiver.md#trying-it-send"),
    "users": ("Schema", "../schema.md"),
    "events": ("Operating", "../operating.md#the-delivery-log"),
    "orgs": ("Organizations", "../organizations.md"),
    "inspect": ("The inspector", "../inspector.md"),
}


def command_markdown() -> dict[str, str]:
    """Page path -> markdown: one page per command, and the index."""
    from clerksync.cli.reference import command_pages

    pages = {}
    rows = ["# Commands", "", "Every page is the command's `--help`, made from the code.", ""]
    rows += ["| command | what it does |", "|---|---|"]
    for page in command_pages():
        top = page.path.split()[0]
        if top not in TOPICS:
            raise KeyError(f"`clerksync {top}` has no topic page: add it to TOPICS in {__file__}")
        title, link = TOPICS[top]
        pages[f"commands/{page.slug}.md"] = page.markdown(f"More in [{title}]({link}).")
        rows.append(f"| [`clerksync {page.path}`]({page.slug}.md) | {page.summary} |")
    pages["commands/index.md"] = "\n".join(rows) + "\n"
    return pages


def on_config(config: Any) -> Any:
    """The command pages go into the nav under "Commands", after its index."""
    from clerksync.cli.reference import command_pages

    entries = [{f"clerksync {p.path}": f"commands/{p.slug}.md"} for p in command_pages()]

    def expand(items: list[Any]) -> None:
        for n, item in enumerate(items):
            if isinstance(item, dict):
                for title, value in item.items():
                    if value == "commands/index.md":
                        items[n] = {title: ["commands/index.md", *entries]}
                    elif isinstance(value, list):
                        expand(value)

    expand(config["nav"])
    return config


def on_files(files: Any, config: Any) -> Any:
    for path, text in command_markdown().items():
        files.append(File.generated(config, path, content=text))
    return files


def example_document(preset: str) -> dict[str, Any]:
    """The document a new Clerk user (Clerk's shape, from ``clerksync send``'s builder) makes
    under ``preset``: what the receiver and reconcile insert."""
    from clerksync.devtools.payloads import clerk_user
    from clerksync.kinds.user import parse_clerk_user
    from clerksync.mapping.documents import new_document, upsert_update
    from clerksync.mapping.schema import PRESETS

    now = datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)
    stamp = int(now.timestamp() * 1000)
    user = parse_clerk_user(
        clerk_user(
            user_id="user_2abc",
            email="grace@example.com",
            first_name="Grace",
            last_name="Hopper",
            created_at=stamp,
            updated_at=stamp,
        )
    )
    users = PRESETS[preset].users
    update, _ = upsert_update(user, now, users, app_id=1 if users.app_id else None)
    return new_document(update)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    for preset in ("nextjs", "fastapi"):
        marker = f"<!-- clerksync:document {preset} -->"
        if marker in markdown:
            shown = json.dumps(example_document(preset), indent=2, default=_bson)
            markdown = markdown.replace(marker, f"```json\n{shown}\n```")
    return markdown


def _bson(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)
