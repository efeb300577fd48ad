"""What every command shares: settings, the store, output to stdout/stderr, ``--json``.

Data from the database or from Clerk is printed as plain text, never as Rich
markup: a user named ``[/]`` or a forged ``svix-id`` of ``[red]x`` must print as
itself, and control characters (ESC, OSC), bidi controls and line separators are
shown escaped (``clerksync.display``, one rule everywhere), so nothing a delivery
carries can reach the terminal as a command or print as something it is not.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clerksync.clerk.jsonbody import dumps
from clerksync.display import visible

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from clerksync.settings import Settings
    from clerksync.store.database import Store

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON on stdout; messages go to stderr.")
]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", metavar="WHEN", help="30m, 2h, 7d, or an ISO 8601 time."),
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

            from clerksync.settings import load_settings

            self._settings = load_settings(env_file=Path(self.env_file) if self.env_file else None)
            for found, meant in self._settings.misnamed:
                say(f"Note: {found} is set, but clerksync reads {meant}: did you mean {meant}?")
        return self._settings


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        obj = ctx.find_root().obj = State(None)
    return obj


def stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


#: the width of tables written to a pipe or a file (no terminal to fit): wide enough that
#: `| grep` sees whole cells; a table is only as wide as its cells need
PIPED_WIDTH = 1000


def stdout(width: int | None = None) -> Console:
    """The console for results. On a terminal (or with COLUMNS set), its width; into a pipe
    or a file, wide: rich would otherwise assume 80 columns and cut cells short."""
    from rich.console import Console

    if width is None and "COLUMNS" not in os.environ and not sys.stdout.isatty():
        width = PIPED_WIDTH
    return Console(highlight=False, width=width)


def one_line(message: str) -> str:
    """A message as exactly one line: newlines folded, the rest shown by the one rule."""
    return visible(" ".join(message.split("\n")))


def say(message: str) -> None:
    """A message for the person: always stderr, one logical line, never hard-wrapped; with
    ``serve --log-json``, one JSON line like every other line it prints."""
    if json_messages():
        import logging

        logging.getLogger("clerksync.serve").info(message)
        return
    sys.stderr.write(visible(message) + "\n")  # data in it cannot start a line of its own
    sys.stderr.flush()


#: this invocation prints its messages and errors as JSON lines (``serve --log-json``); the
#: root group resets it when the command ends (tests run many commands in one process)
_JSON_MESSAGES = [False]


def json_messages(on: bool | None = None) -> bool:
    """Does this command print its messages as JSON lines? ``on`` sets it."""
    if on is not None:
        _JSON_MESSAGES[0] = on
    return _JSON_MESSAGES[0]


def cell(value: Any) -> str:
    """A table cell or a shown value: blank for None, ✓ for True, escaped text otherwise
    (newlines too)."""
    if value is None:
        return ""
    if value is True:
        return "✓"
    if value is False:
        return ""
    return visible(value)


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 user``, ``2 users``; ``words`` for irregular plurals (delivery → deliveries)."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def text(value: Any, style: str = "") -> Text:
    """Data as a Rich ``Text``: printed literally, never parsed as markup."""
    from rich.text import Text

    return Text(cell(value), style=style)


def open_store(ctx: typer.Context, *, indexes: bool = False) -> Store:
    from clerksync.store.connect import connect

    settings = state(ctx).settings
    settings.check("MONGODB_URL", "MONGODB_DB")
    store = connect(settings, announce=say)
    ctx.call_on_close(store.close)  # the command's end closes its client, whatever happens
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


def print_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str]],
    title: str,
    *,
    keep: Sequence[str] = (),
    drop: Sequence[str] = (),
) -> None:
    """Rows as one line each on stdout, whatever the width (a pipe counts as 80 columns).

    ``columns`` is (key, heading). Columns in ``keep`` (ids a person copies) are
    never cut; when the line would not fit, the columns in ``drop`` go first, in
    that order (``--json`` and ``show`` still have them), then the others shrink
    and end in "…". Cells are plain text: see the module docstring.
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    console = stdout()
    cells = {key: [cell(row.get(key)) for row in rows] for key, _ in columns}

    def natural(key: str, heading: str) -> int:
        return max([len(heading), *(len(c) for c in cells[key])])

    def least(key: str, heading: str) -> int:
        widest = natural(key, heading)
        return widest if key in keep else min(widest, max(len(heading), 10))

    # a droppable column with nothing in it (no errors, say) is dropped first
    shown = [(k, h) for k, h in columns if k not in drop or any(cells[k])]
    for key in drop:
        needed = sum(least(k, h) for k, h in shown) + 3 * (len(shown) - 1)
        if needed <= console.width:
            break
        shown = [(k, h) for k, h in shown if k != key]
    # Widths are set here rather than left to Rich, which would cut the last column
    # instead of shortening the long ones: the widest shrinkable column gives way first.
    widths = {k: natural(k, h) for k, h in shown}
    excess = sum(widths.values()) + 3 * (len(shown) - 1) - console.width
    while excess > 0:
        shrinkable = [k for k, h in shown if k not in keep and widths[k] > least(k, h)]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda k: widths[k])
        widths[widest] -= 1
        excess -= 1
    table = Table(
        title=Text(cell(title)),
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        title_justify="left",
    )
    for key, heading in shown:
        table.add_column(
            heading,
            no_wrap=True,
            overflow="fold" if key in keep else "ellipsis",
            width=widths[key],
        )
    for i in range(len(rows)):
        table.add_row(*(Text(cells[key][i]) for key, _ in shown))
    console.print(table)


def print_json(data: Any) -> None:
    """``--json`` output: always strict JSON (RFC 8259), see ``clerksync.clerk.jsonbody``."""
    sys.stdout.write(dumps(data, indent=2) + "\n")
