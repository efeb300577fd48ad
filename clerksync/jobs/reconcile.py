"""Bulk jobs: ``sync_metadata``, ``reconcile``, ``set_admin``. Each returns a typed result
(``SyncMetadataResult``, ``ReconcileResult``, ``SetAdminResult``) the CLI renders.

They meet Clerk's limits head-on, so: reads are batched (``user_id`` filters of
100, or pages of 500 in a stable order), never one request per user; every
request passes one sliding-window pacer set under the instance limit; a 429 pauses
the pacer for its (capped) ``Retry-After`` and the request is retried; writes happen
only where Clerk's copy differs, so an interrupted run, rerun, repeats no
finished write. Users go through the same mapping and ordering rules as the
receiver (``UserStore.upsert_many``), and a page the SDK's models reject is
read as raw JSON (``ClerkGateway``), so no user is lost to one odd record.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

from clerksync.clerk.gateway import ID_BATCH, PAGE_SIZE, ClerkGateway
from clerksync.clerk.pacing import SlidingWindowPacer, instance_pacer
from clerksync.errors import ClerkApiError, ClerkSyncError, InvalidEvent, StoreUnavailable
from clerksync.jobs.common import CURSOR_BATCH, Progress, batches, call_with_retries
from clerksync.jobs.prune import PruneRun, prune_refusal
from clerksync.kinds.user import CLERK_USER_ID, ClerkUser, parse_clerk_user
from clerksync.store.instance import ensure_same_instance
from clerksync.store.users import UserStore

MAX_CURSOR_TRIES = 20  # users of a page tried as the next cursor when the last ones are gone


@dataclass(frozen=True)
class ReconcileResult:
    """What ``reconcile`` did (or, with ``dry_run``, would do); the CLI renders it.
    ``adopted``: app-created documents taken over by Clerk users with their verified email."""

    clerk_users: int
    mongo_users: int
    created: int
    updated: int
    adopted: int
    unchanged: int
    orphaned: int
    pruned: int
    invalid: int
    orphans: tuple[str, ...]
    dry_run: bool = False
    #: the Clerk instance, and ``new``/``same``/``rebound``/``not yet`` (``clerksync.instance``)
    instance: str | None = None
    bound: str | None = None
    #: why ``--prune`` deleted nothing (``clerksync.prune``), or the run that can be undone
    prune_refused: str | None = None
    prune_run: str | None = None
    #: the same counters for organizations and memberships (``clerksync.orgsync``): ``clerk``,
    #: ``mongo``, ``created``…, and a ``note`` when the instance has no organizations
    organizations: dict[str, Any] = field(default_factory=dict)
    memberships: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The documented ``reconcile --json`` keys."""
        data = asdict(self)
        data.pop("dry_run")
        data["orphans"] = list(self.orphans)
        return data


def reconcile(
    store: UserStore,
    gateway: ClerkGateway,
    *,
    rate: float,
    dry_run: bool = False,
    prune: bool = False,
    allow_mass_prune: bool = False,
    rebind: bool = False,
    progress: Progress | None = None,
) -> ReconcileResult:
    """Bring MongoDB in line with Clerk: create the missing, update the stale, report orphans.

    First the database's Clerk instance is checked (``clerksync.instance``):
    against another instance nothing runs until ``rebind``. A prune is held to
    ``clerksync.prune``'s guard (no prune when Clerk lists nobody, nor of more
    than a small share unless ``allow_mass_prune``; the reason goes to
    ``prune_refused`` and nothing is deleted) and journaled: users, organizations
    and memberships, cascades included, under one ``prune_run`` (set whenever
    anything was pruned) that ``undo_prune`` undoes.

    Memory stays flat: one page at a time; the Clerk ids seen, and the ids MongoDB
    holds (read by a second thread while the pages come in), go to two temporary
    on-disk SQLite tables, and the orphan pass merges them in order. Every
    candidate is then looked up in Clerk (100 ids a request) before it is reported
    or pruned: a user who signed up while the snapshot was read is no orphan.
    Users are paged by cursor; organizations and memberships follow
    (``clerksync.orgsync``), each with the same counters in its own sub-summary.
    """
    bucket = instance_pacer(rate)
    summary: dict[str, Any] = {
        "clerk_users": 0,
        "mongo_users": 0,
        "created": 0,
        "updated": 0,
        "adopted": 0,
        "unchanged": 0,
        "orphaned": 0,
        "pruned": 0,
        "invalid": 0,
        "orphans": [],
    }
    summary.update(
        call_with_retries(
            functools.partial(ensure_same_instance, store, gateway, rebind=rebind, dry_run=dry_run),
            bucket,
        )
    )
    # One prune run for the whole reconcile (it writes nothing until something is pruned).
    run = PruneRun(store) if prune and not dry_run else None
    seen = _id_table()
    orphans = _id_table()
    try:
        # The snapshot of MongoDB's ids is read while the pages come in.
        with ThreadPoolExecutor(1) as snapshotter:
            snapshot = snapshotter.submit(_snapshot_ids, store)
            _reconcile_pages(store, gateway, bucket, seen, summary, dry_run, progress)
            held = snapshot.result()
        try:
            candidates = _merge_missing(held, seen)
            for batch in batches(candidates, ID_BATCH):
                # Still in Clerk (it signed up after the page that would list it): no orphan.
                found = call_with_retries(functools.partial(gateway.get_many, batch), bucket)
                known = {u.get("id") for u in found}
                for clerk_id in batch:
                    if clerk_id in known:
                        continue
                    summary["orphaned"] += 1
                    if len(summary["orphans"]) < 50:
                        summary["orphans"].append(clerk_id)
                    orphans.execute("INSERT OR IGNORE INTO ids VALUES (?)", (clerk_id,))
            (held_count,) = held.execute("SELECT count(*) FROM ids").fetchone()
        finally:
            held.close()
        # Every kind's orphans and guard first, then the deletes, if no guard refused:
        # an organization's or user's cascade must not take what another guard kept.
        from clerksync.jobs.orgsync import PendingPrune, reconcile_organizations, settle

        pending: list[PendingPrune] = []
        if prune and summary["orphaned"]:
            refusal = prune_refusal(summary["orphaned"], held_count, summary["clerk_users"])
            pending.append(
                PendingPrune("users", summary, orphans, run.prune if run else None, refusal)
            )
            orphans = _id_table()  # the pending prune owns (and closes) the table now
        try:
            # Then organizations and memberships, in turn: run alongside the users they
            # gained nothing on a loaded machine (the database is the bottleneck).
            summary["organizations"], summary["memberships"] = reconcile_organizations(
                store,
                gateway,
                bucket,
                dry_run=dry_run,
                prune=prune,
                allow_mass_prune=allow_mass_prune,
                run=run,
                pending=pending,
            )
        except BaseException:
            for waiting in pending:  # stopped before any delete: nothing is pruned
                waiting.orphans.close()
            raise
        settle(pending, allow_mass_prune=allow_mass_prune)
        summary["mongo_users"] = store.estimated_count()
        summary["organizations"]["mongo"] = store.orgs.organizations.estimated_document_count()
        summary["memberships"]["mongo"] = store.orgs.memberships.estimated_document_count()
    except Exception as exc:
        from pymongo.errors import PyMongoError

        from clerksync.store.mongo import describe_mongo_error

        failure = exc
        if isinstance(exc, PyMongoError):  # a raw collection's call: one line all the same
            failure = StoreUnavailable(describe_mongo_error(exc))
        if run is not None and run.journaled and isinstance(failure, ClerkSyncError):
            # Stopped after deleting some: the run that puts them back is in the one line.
            failure.args = (
                f"{failure.args[0] if failure.args else failure} (prune run {run.run_id} had "
                f"deleted some already: `clerksync reconcile --undo-prune {run.run_id}` puts "
                "them back)",
                *failure.args[1:],
            )
        if failure is exc:
            raise
        raise failure from exc
    finally:
        seen.close()
        orphans.close()
    if run is not None and run.journaled:
        summary["prune_run"] = run.run_id  # one run: users, organizations and memberships
    fields = {f.name for f in dataclass_fields(ReconcileResult)}
    counts = {k: v for k, v in summary.items() if k in fields and k != "orphans"}
    return ReconcileResult(**counts, orphans=tuple(summary["orphans"]), dry_run=dry_run)


def _reconcile_pages(
    store: UserStore,
    gateway: ClerkGateway,
    bucket: SlidingWindowPacer,
    seen: sqlite3.Connection,
    summary: dict[str, Any],
    dry_run: bool,
    progress: Progress | None,
) -> None:
    """Page through Clerk's users (created_at order, by cursor) and apply each page in bulk."""
    # The app's own documents to adopt, read once for the run (usually none).
    candidates = store.adoption_map()
    total = None
    if progress is not None:  # the count only feeds the progress bar
        with contextlib.suppress(ClerkApiError):
            total = call_with_retries(gateway.count_users, bucket)

    def fetch(
        cursors: list[str], prepare: bool
    ) -> tuple[list[tuple[Any, ClerkUser | None]], dict[str, dict[str, Any]]]:
        """The page after the first cursor Clerk still knows: the last user of the previous
        page, else (deleted meanwhile: a 422) the one before it, and so on. Each user comes
        with its id and parsed (None: invalid), and with ``prepare`` (the pages before were
        all new) its new document made: here, in the reader's thread, while the main thread
        waits on the database for the page before."""
        options: list[str | None] = [*cursors] or [None]
        for attempt, cursor in enumerate(options):
            try:
                page = call_with_retries(functools.partial(gateway.users_after, cursor), bucket)
            except ClerkApiError as exc:
                if exc.status != 422 or attempt + 1 >= min(len(cursors), MAX_CURSOR_TRIES):
                    raise
            else:
                parsed = [(raw.get("id"), _parsed(raw)) for raw in page]
                valid = (user for _, user in parsed if user is not None)
                return parsed, store.new_documents(valid) if prepare else {}
        raise AssertionError("unreachable")

    # One page ahead: the next request is in flight while this page is written. Paging is
    # by cursor (starting_after), so a page deep in a large instance costs what the first
    # one does; a deep offset "gets progressively slower and eventually times out".
    all_new = False  # was the last page all new users? then insert this one outright
    with ThreadPoolExecutor(1) as reader:
        upcoming = reader.submit(fetch, [], False)
        previous: set[str] = set()  # ids of the last page: a fallback cursor re-serves some
        while True:
            page, prepared = upcoming.result()
            full = len(page) == PAGE_SIZE
            ids = [i for i, _ in page]
            if full:
                cursors = [i for i in reversed(ids) if isinstance(i, str) and i]
                upcoming = reader.submit(fetch, cursors, all_new and not dry_run)
            page = [(i, user) for i, user in page if i not in previous]
            previous = {i for i in ids if isinstance(i, str)}
            users = [user for _, user in page if user is not None]
            summary["invalid"] += len(page) - len(users)
            summary["clerk_users"] += len(page)
            if users:
                seen.executemany("INSERT OR IGNORE INTO ids VALUES (?)", [(u.id,) for u in users])
                if dry_run:
                    counts = store.plan_many(users, candidates=candidates)
                else:
                    counts = store.upsert_many(
                        users, assume_new=all_new, candidates=candidates, prepared=prepared
                    )
                    all_new = counts["created"] == len(users)
                for key, value in counts.items():
                    summary[key] += value
            if progress:
                progress(summary["clerk_users"], total)
            if not full:
                break


def _parsed(raw: Any) -> ClerkUser | None:
    """One listed user as the receiver reads it; None when it is not a valid user."""
    try:
        return parse_clerk_user(raw)
    except InvalidEvent:
        return None


def _id_table() -> sqlite3.Connection:
    """A private temporary SQLite database on disk (gone on close) with one sorted id table;
    usable from the thread that fills it and then the one that reads it."""
    table = sqlite3.connect("", check_same_thread=False)
    table.execute("CREATE TABLE ids (id TEXT PRIMARY KEY) WITHOUT ROWID")
    return table


def _snapshot_ids(store: UserStore) -> sqlite3.Connection:
    """The Clerk ids MongoDB holds now, in an id table (no sort asked of the server)."""
    table = _id_table()
    clerk_id = store.schema.users.clerk_id
    ids = (d.get(clerk_id) for d in store.scan({}, {clerk_id: 1, "_id": 0}, batch=CURSOR_BATCH))
    # Only Clerk user ids: an app's own users (no id, or a placeholder) are no orphans.
    linked = (i for i in ids if isinstance(i, str) and CLERK_USER_ID.match(i))
    for batch in batches(linked, CURSOR_BATCH):
        table.executemany("INSERT OR IGNORE INTO ids VALUES (?)", [(i,) for i in batch])
    return table


def _merge_missing(held: sqlite3.Connection, seen: sqlite3.Connection) -> Iterator[str]:
    """Ids in ``held`` and not in ``seen``: two sorted streams merged, flat memory."""
    known = (row[0] for row in seen.execute("SELECT id FROM ids ORDER BY id"))
    next_known: str | None = next(known, None)
    for (clerk_id,) in held.execute("SELECT id FROM ids ORDER BY id"):
        while next_known is not None and next_known < clerk_id:
            next_known = next(known, None)
        if next_known != clerk_id:
            yield clerk_id
