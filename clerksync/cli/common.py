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


def piped() -> bool:
    """stdout is a pipe or a file, and COLUMNS does not give a width: tables are then
    tab-separated lines, whole (for ``cut``, ``awk``, ``grep``), not a layout for a screen."""
    return "COLUMNS" not in os.environ and not sys.stdout.isatty()


def stdout(width: int | None = None) -> Console:
    """The console for results: the terminal's width (or COLUMNS)."""
    from rich.console import Console

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
    """Rows on stdout, ``columns`` being (key, heading); cells are plain text (module
    docstring).

    On a terminal (or with COLUMNS): a table as wide as the screen, no line ending in spaces.
    Columns in ``keep`` (ids and emails a person copies) are never cut: they wrap when they
    cannot fit. When a row would not fit on one line, the columns in ``drop`` go first, in
    that order, and a note on stderr names them (``--json`` and ``show`` have them); then
    the other columns shrink and end in "…".

    Into a pipe or a file (COLUMNS unset): the heading line and one line per row,
    tab-separated, every cell whole; the title goes to stderr.
    """
    cells = {key: [cell(row.get(key)) for row in rows] for key, _ in columns}
    if piped():
        say(title)
        out = ["\t".join(heading for _, heading in columns)]
        out += ["\t".join(cells[key][i] for key, _ in columns) for i in range(len(rows))]
        sys.stdout.write("".join(line + "\n" for line in out))
        return
    width = stdout().width

    def natural(key: str, heading: str) -> int:
        return max([len(heading), *(len(c) for c in cells[key])])

    def least(key: str, heading: str) -> int:
        widest = natural(key, heading)
        return widest if key in keep else min(widest, max(len(heading), 10))

    # a droppable column with nothing in it (no errors, say) goes first, unannounced
    shown = [(k, h) for k, h in columns if k not in drop or any(cells[k])]
    left_out = []
    for key in drop:
        needed = sum(least(k, h) for k, h in shown) + 3 * (len(shown) - 1)
        if needed <= width:
            break
        left_out += [h for k, h in shown if k == key]
        shown = [(k, h) for k, h in shown if k != key]
    # Widths are set here rather than left to Rich, which would cut the last column
    # instead of shortening the long ones: the widest shrinkable column gives way first.
    widths = {k: natural(k, h) for k, h in shown}
    excess = sum(widths.values()) + 3 * (len(shown) - 1) - width
    while excess > 0:
        shrinkable = [k for k, h in shown if k not in keep and widths[k] > least(k, h)]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda k: widths[k])
        widths[widest] -= 1
        excess -= 1
    while excess > 0:  # what must stay whole still does not fit: the widest of it wraps
        wrappable = [k for k, h in shown if widths[k] > max(len(h), 8)]
        if not wrappable:
            break
        widest = max(wrappable, key=lambda k: widths[k])
        widths[widest] -= 1
        excess -= 1
    _print_table(rows, shown, cells, widths, keep, title, width)
    if left_out:
        say(
            f"({', '.join(left_out)} left out to fit {width} columns: a wider terminal, "
            "`show` or --json has them)"
        )


def _print_table(
    rows: Sequence[Any],
    shown: Sequence[tuple[str, str]],
    cells: dict[str, list[str]],
    widths: dict[str, int],
    keep: Sequence[str],
    title: str,
    width: int,
) -> None:
    """The table as Rich lays it out, each line without the spaces Rich pads it with."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for key, heading in shown:
        whole = key in keep  # never cut: wraps instead
        table.add_column(
            heading,
            no_wrap=not whole,
            overflow="fold" if whole else "ellipsis",
            width=widths[key],
        )
    for i in range(len(rows)):
        table.add_row(*(Text(cells[key][i]) for key, _ in shown))
    print_rendered(cell(title), table, width=width)


def print_rendered(*renderables: Any, width: int | None = None) -> None:
    """Rich renderables on stdout; a ``str`` is one line of plain text (never markup), never
    hard-wrapped. On a terminal, as Rich prints them (in colour); into a pipe or a file,
    plain, and no line ends in the spaces Rich pads cells with."""
    import io

    from rich.console import Console
    from rich.text import Text

    buffer = None if sys.stdout.isatty() else io.StringIO()
    console = (
        stdout(width)
        if buffer is None
        else Console(file=buffer, width=width, highlight=False, color_system=None)
    )
    for renderable in renderables:
        if isinstance(renderable, str):
            console.print(Text(renderable), soft_wrap=True)
        else:
            console.print(renderable)
    if buffer is None:
        return
    sys.stdout.write("".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines()))


def print_json(data: Any) -> None:
    """``--json`` output: always strict JSON (RFC 8259), see ``clerksync.clerk.jsonbody``."""
    sys.stdout.write(dumps(data, indent=2) + "\n")
