"""Walking one kind's instance-wide Backend API list, a page at a time, into the one page
writer (``clerksync.store.pages``): the same parsing, mapping and ordering rules as the
receiver, in bulk.

Two ways of paging, as the kind's ``Listing`` says. ``cursor`` (users): ``starting_after``
the last id of the previous page, ascending, so a page deep in a large instance costs what
the first one does (a deep offset "gets progressively slower and eventually times out"),
and one that signs up during the walk lands after the cursor and is still seen; the walk
stops on a short page; when the last object of a page is deleted before the next request
(Clerk answers 422), the one before it is the cursor. ``offset``: ``{data, total_count}``
pages of 500, stopping on the page that reaches the total (no empty page to learn it).

The next page is in flight while one is written, and it is parsed, and (after two all-new
pages) its new documents made, in the reader's thread. After a page of all-new objects the
next one is inserted without a planning read. What the pages owe their parents (a payer's
plan) is recomputed after the last one (every ``MOST_OWED`` parents on a long walk), under a
record a stopped walk leaves for the next run (``clerksync.store.owed``); when the kind's
collection was empty as the walk began, from what the pages wrote (less what a delete has
tombstoned since), not read back.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from clerksync.clerk.gateway import PAGE_SIZE, ClerkGateway
from clerksync.clerk.pacing import SlidingWindowPacer
from clerksync.errors import ClerkApiError, ClerkSyncError, InvalidEvent
from clerksync.jobs.common import call_with_retries
from clerksync.kinds.base import Kind
from clerksync.store.mongo import utcnow
from clerksync.store.owed import Owed
from clerksync.store.pages import PageCounts, plan_page, write_page
from clerksync.store.writer import Writer

MAX_CURSOR_TRIES = 20  # objects of a page tried as the next cursor when the last ones are gone
MAX_ORPHANS_LISTED = 50


@dataclass
class KindSummary:
    """One kind's reconcile: what Clerk lists (``clerk``) and MongoDB holds (``mongo``), what
    was created, updated, adopted (users: the app's own documents taken over), left
    unchanged, the records that could not be read (``invalid``), the orphans (in MongoDB,
    not in Clerk; up to 50 listed) and how many were pruned. ``note``: why the kind was not
    walked (no organizations feature); ``prune_refused``: why nothing was pruned."""

    clerk: int = 0
    mongo: int = 0
    created: int = 0
    updated: int = 0
    adopted: int = 0
    unchanged: int = 0
    orphaned: int = 0
    pruned: int = 0
    invalid: int = 0
    orphans: list[str] = field(default_factory=list)
    note: str | None = None
    prune_refused: str | None = None

    def add(self, counts: PageCounts) -> None:
        self.created += counts.created
        self.updated += counts.updated
        self.adopted += counts.adopted
        self.unchanged += counts.unchanged

    def orphan(self, clerk_id: str) -> None:
        self.orphaned += 1
        if len(self.orphans) < MAX_ORPHANS_LISTED:
            self.orphans.append(clerk_id)


def id_table() -> sqlite3.Connection:
    """A private temporary SQLite database on disk (gone on close) with one sorted id table;
    usable from the thread that fills it and then the one that reads it."""
    table = sqlite3.connect("", check_same_thread=False)
    table.execute("CREATE TABLE ids (id TEXT PRIMARY KEY) WITHOUT ROWID")
    return table


Page = tuple[list[tuple[Any, Any]], Any, Mapping[str, dict[str, Any]]]


def walk(
    writer: Writer,
    gateway: ClerkGateway,
    pacer: SlidingWindowPacer,
    kind: Kind,
    seen: sqlite3.Connection,
    summary: KindSummary,
    *,
    dry_run: bool,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Page through the kind's list and apply each page (see the module docstring); the ids
    listed go to ``seen`` for the orphan pass."""
    assert kind.listing is not None
    hooks = writer.hooks(kind)
    candidates = hooks.page_candidates()  # read once for the run (users: documents to adopt)
    fetch = _cursor_pages if kind.listing.paging == "cursor" else _offset_pages
    get = functools.partial(fetch, gateway, pacer, kind)

    def parsed_page(state: Any, prepare: bool) -> Page:
        raws, following = get(state)
        page = [(raw.get("id"), _parsed(kind, raw)) for raw in raws]
        valid = [item for _, item in page if item is not None]
        return page, following, hooks.prepare(valid, utcnow()) if prepare else {}

    # the parents' recomputes the pages owe (a payer's plan), done after them
    owed = None
    if kind.rollups and not dry_run:  # first filled: the guess is made of what pages wrote
        owed = Owed(writer.store, kind, first_fill=writer.store.empty(kind))
    all_new = False  # was the last page all new? then insert this one without planning
    previous: set[Any] = set()  # ids of the last page: a fallback cursor re-serves some
    try:
        with ThreadPoolExecutor(1) as reader:
            upcoming = reader.submit(parsed_page, None, False)
            while True:
                page, following, prepared = upcoming.result()
                if following is not None:
                    upcoming = reader.submit(parsed_page, following, all_new and not dry_run)
                ids = {i for i, _ in page}
                page = [(i, item) for i, item in page if i not in previous]
                previous = ids
                items = [item for _, item in page if item is not None]
                summary.invalid += len(page) - len(items)
                summary.clerk += len(page)
                if items:
                    seen.executemany(
                        "INSERT OR IGNORE INTO ids VALUES (?)", [(i.id,) for i in items]
                    )
                    if dry_run:
                        counts = plan_page(writer, kind, items, candidates=candidates)
                    else:
                        counts = write_page(
                            writer,
                            kind,
                            items,
                            assume_new=all_new,
                            candidates=candidates,
                            prepared=prepared,
                            owed=owed,
                        )
                        all_new = counts.created == len(items)
                        if owed is not None and owed.full:
                            owed.settle()
                    summary.add(counts)
                if progress:
                    progress(summary.clerk)
                if following is None:
                    break
    except Exception:
        if owed is not None:
            with contextlib.suppress(ClerkSyncError):  # its records stay for the next run
                owed.settle(failed=True)
        raise
    if owed is not None:
        owed.settle()


def _parsed(kind: Kind, raw: Any) -> Any:
    """One listed object as the receiver reads it; None when it is not a valid one."""
    try:
        return kind.parse(raw)
    except InvalidEvent:
        return None


def _cursor_pages(
    gateway: ClerkGateway, pacer: SlidingWindowPacer, kind: Kind, cursors: list[str] | None
) -> tuple[list[dict[str, Any]], list[str] | None]:
    """The page after the first cursor Clerk still knows: the last object of the previous
    page, else (deleted meanwhile: a 422) the one before it, and so on; and the cursors for
    the page after it (None: this was the last)."""
    options: list[str | None] = [*(cursors or [])] or [None]
    for attempt, cursor in enumerate(options):
        try:
            page = call_with_retries(functools.partial(gateway.users_after, cursor), pacer)
        except ClerkApiError as exc:
            if exc.status != 422 or attempt + 1 >= min(len(options), MAX_CURSOR_TRIES):
                raise
        else:
            if len(page) < PAGE_SIZE:
                return page, None
            ids = [raw.get("id") for raw in page]
            return page, [i for i in reversed(ids) if isinstance(i, str) and i]
    raise AssertionError("unreachable")


def _offset_pages(
    gateway: ClerkGateway, pacer: SlidingWindowPacer, kind: Kind, offset: int | None
) -> tuple[list[dict[str, Any]], int | None]:
    """The page at ``offset``, and the next page's offset (None: this was the last)."""
    listing = kind.listing
    assert listing is not None
    at = offset or 0
    ask = functools.partial(
        gateway.list_at, listing.path, offset=at, params=listing.params, off=listing.off
    )
    page, total = call_with_retries(ask, pacer)
    more = len(page) == PAGE_SIZE and at + PAGE_SIZE < total
    return page, at + PAGE_SIZE if more else None
