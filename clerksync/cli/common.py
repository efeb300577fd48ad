"""What every command shares: settings, the store, output to stdout/stderr, ``--json``."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from clerksync.config import Settings
    from clerksync.store import UserStore

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON on stdout; messages go to stderr.")
]


class State:
    """Per-invocation state on ``ctx.obj``: settings are loaded once, on first use."""

    def __init__(self, env_file: str | None) -> None:
        self.env_file = env_file
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from pathlib import Path

            from clerksync.config import load_settings

            self._settings = load_settings(env_file=Path(self.env_file) if self.env_file else None)
        return self._settings


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        obj = ctx.find_root().obj = State(None)
    return obj


def stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def stdout() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def say(message: str) -> None:
    """A message for the person: always stderr, so stdout stays data."""
    stderr().print(message, markup=False)


def open_store(ctx: typer.Context, *, indexes: bool = False) -> UserStore:
    from clerksync.store import connect

    settings = state(ctx).settings
    settings.require()
    store = connect(settings, announce=say)
    store.ping()  # fail fast with a clear message instead of on the first query
    if indexes:
        report = store.ensure_indexes()
        for failure in report.failures:
            say(f"Index {failure.name} on {failure.collection} could not be made: {failure.error}")
        if not report.clerk_id_enforced:
            from clerksync.errors import StoreUnavailable

            raise StoreUnavailable(
                f"{store.users.name}.{store.clerk_id} has no unique index, so this command "
                "could write duplicate users; `clerksync doctor` says why"
            )
    return store


def print_table(rows: list[dict[str, Any]], columns: tuple[str, ...], title: str) -> None:
    """Rows of plain values as a Rich table on stdout; None shows as blank."""
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    stdout().print(table)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
