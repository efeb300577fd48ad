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

import collections
import contextlib
import functools
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any, TypeVar

from clerksync import bookkeeping as bk
from clerksync.clerk import ID_BATCH, PAGE_SIZE, ClerkGateway
from clerksync.errors import ClerkApiError, ClerkSyncError, InvalidEvent, StoreUnavailable
from clerksync.instance import ensure_same_instance
from clerksync.prune import PruneRun, prune_refusal
from clerksync.ratelimit import (
    PerUserWindow,
    RetryPolicy,
    SlidingWindowPacer,
    instance_pacer,
)
from clerksync.schema import CLERK_USER_ID
from clerksync.store import UserStore
from clerksync.storebase import clerk_id_filter
from clerksync.users import ClerkUser, clerk_copy_differs, parse_clerk_user
from clerksync.writeback import (
    InstanceGuard,
    LeaseKeeper,
    Limits,
    WriteBack,
    default_limits,
    write_back,
    write_claimed,
)
from clerksync.writeback_queue import LEASE

T = TypeVar("T")
MAX_BACKLOG = 500  # queued metadata writes before reading pauses (bounds memory)
# Documents per cursor batch: pymongo's default grows to 16 MB a batch, which makes
# memory grow with the collection; a fixed batch keeps it flat.
CURSOR_BATCH = 1000
MAX_CURSOR_TRIES = 20  # users of a page tried as the next cursor when the last ones are gone
Progress = Callable[[int, int | None], None]


def call_with_retries(
    fn: Callable[[], T], pacer: SlidingWindowPacer, *, policy: RetryPolicy | None = None
) -> T:
    """One Clerk request under the pacer, retried by the one retry policy: a 429 pauses the
    pacer for its (capped) Retry-After, a 5xx or a network failure backs off with jitter."""
    policy = policy or RetryPolicy()
    for attempt in range(policy.attempts):
        pacer.acquire()
        try:
            return fn()
        except ClerkApiError as exc:
            delay = policy.delay(attempt, exc)
            if delay is None or attempt == policy.attempts - 1:
                raise
            if exc.status == 429:
                pacer.pause(delay)
            else:
                policy.sleep(delay)
    raise AssertionError("unreachable")


def _batches(cursor: Iterator[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in cursor:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True)
class SyncMetadataResult:
    """What ``sync_metadata`` did (or, with ``dry_run``, would do); the CLI renders it.
    ``busy``: users another process was writing back right then (it finishes them);
    ``would_change``: the Clerk ids a dry run would write; ``errors``: the first 20 failures.
    ``instance``/``bound``: the Clerk instance and how the binding went (as reconcile's)."""

    total: int
    updated: int
    unchanged: int
    failed: int
    missing: int
    busy: int = 0
    dry_run: bool = False
    would_change: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    instance: str | None = None
    bound: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The documented ``sync-metadata --json`` keys: the counts, ``busy`` when some were,
        ``would_change`` on a dry run, ``errors`` when a write failed."""
        data: dict[str, Any] = {
            "total": self.total,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "missing": self.missing,
        }
        if self.busy:
            data["busy"] = self.busy
        if self.dry_run:
            data["would_change"] = list(self.would_change)
        if self.errors:
            data["errors"] = list(self.errors)
        return data


def sync_metadata(
    store: UserStore,
    gateway: ClerkGateway,
    *,
    rate: float,
    dry_run: bool = False,
    rebind: bool = False,
    concurrency: int = 8,
    progress: Progress | None = None,
    limits: Limits | None = None,
) -> SyncMetadataResult:
    """Make every MongoDB user's Clerk ``publicMetadata`` hold its ``userMongoId``/``isAdmin``.

    First the database's Clerk instance is checked, as ``reconcile`` does: against another
    instance nothing is written (``InstanceMismatch``) until ``rebind``.
    Clerk is read 100 ids a request; the drifted users of each batch are claimed at once
    (the receiver's lease, so a worker and this job never write one user at once), written
    through ``write_claimed`` like the workers' write-backs, and finished in one bulk write
    per batch: a change made meanwhile keeps its mark and is written last. A user another
    process is writing right now is counted as ``busy`` (that process finishes it)."""
    limits = limits or default_limits(rate, base_delay=0.5)
    binding = call_with_retries(
        functools.partial(ensure_same_instance, store, gateway, rebind=rebind, dry_run=dry_run),
        limits.pacer,
        policy=limits.policy,
    )
    keeper = LeaseKeeper(store.queue)
    summary: dict[str, Any] = {
        "total": 0,
        "updated": 0,
        "unchanged": 0,
        "failed": 0,
        "missing": 0,
        "busy": 0,
    }
    would_change: list[str] = []
    errors: list[str] = []
    total = store.count() if progress is not None else None  # only the progress bar uses it
    schema = store.schema
    clerk_id = schema.users.clerk_id
    fields = {**schema.users.projection(), bk.SEQ: 1, bk.SEEN: 1, bk.DUE: 1}

    def write(doc: Mapping[str, Any], copy: Mapping[str, Any]) -> WriteBack:
        # Finished in bulk by the reaper below, which keeps the lease until then.
        return write_claimed(
            store.queue,
            gateway,
            doc,
            limits,
            clerk_copy=copy,
            inline=True,
            finish=lambda done: 0,
        )

    finished: list[tuple[Mapping[str, Any], Mapping[str, Any], bool]] = []

    def finish_books() -> None:
        store.queue.finish(finished)
        for doc, _, _ in finished:
            keeper.let_go(doc["_id"])
        finished.clear()

    def count(doc: Mapping[str, Any], result: WriteBack) -> None:
        outcome = result.outcome
        if outcome in ("written", "unchanged"):
            summary["updated" if outcome == "written" else "unchanged"] += 1
            finished.append((doc, result.copy or {}, outcome == "written"))
            if len(finished) >= ID_BATCH:
                finish_books()
            return
        keeper.let_go(doc["_id"])  # deferred, parked or dropped: the claim is let go already
        if outcome == "dropped":  # deleted from Clerk since we read it
            summary["missing"] += 1
        else:
            summary["failed"] += 1
            errors.append(f"{doc[clerk_id]}: {result.error}")

    # Writes to Clerk run in a pool while the next batch is read; a bounded backlog keeps
    # memory flat.
    pending: collections.deque[tuple[Mapping[str, Any], Future[WriteBack]]]
    pending = collections.deque()

    def reap(block: bool) -> None:
        while pending and (block or pending[0][1].done() or len(pending) > MAX_BACKLOG):
            doc, future = pending.popleft()
            count(doc, future.result())  # also surfaces a database error
        if block and finished:
            finish_books()

    try:
        with ThreadPoolExecutor(concurrency) as pool:
            # Natural order: any order will do, and a sort would make the server read all first.
            # Documents without a Clerk user id are the app's own users: nothing to write back.
            linked = clerk_id_filter(clerk_id)
            cursor = store.scan(linked, fields, batch=CURSOR_BATCH)
            for batch in _batches(cursor, ID_BATCH):
                ids = [d[clerk_id] for d in batch]
                found = call_with_retries(
                    functools.partial(gateway.get_many, ids), limits.pacer, policy=limits.policy
                )
                clerk = {u["id"]: u.get("public_metadata") or {} for u in found}
                to_write = []
                agreed = []
                for doc in batch:
                    summary["total"] += 1
                    if doc[clerk_id] not in clerk:
                        summary["missing"] += 1
                    elif clerk_copy_differs(clerk[doc[clerk_id]], doc, schema):
                        to_write.append(doc)
                    else:
                        summary["unchanged"] += 1
                        if bk.has(doc, bk.DUE):  # Clerk already agrees: just clear the mark
                            agreed.append((doc, clerk[doc[clerk_id]]))
                if dry_run:
                    would_change.extend(d[clerk_id] for d in to_write)
                    summary["updated"] += len(to_write)
                else:
                    store.queue.settle(agreed)
                    claimed = (
                        store.queue.claim_many([d["_id"] for d in to_write]) if to_write else []
                    )
                    if len(claimed) < len(to_write):
                        summary["busy"] += len(to_write) - len(claimed)
                    for doc in claimed:
                        keeper.hold(doc["_id"])
                        copy = clerk[doc[clerk_id]]
                        pending.append((doc, pool.submit(write, doc, copy)))
                    reap(block=False)
                if progress:
                    progress(summary["total"], total)
            reap(block=True)
    finally:
        keeper.stop()
    return SyncMetadataResult(
        **summary,
        dry_run=dry_run,
        would_change=tuple(would_change),
        errors=tuple(errors[:20]),
        instance=binding.get("instance"),
        bound=binding.get("bound"),
    )


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
            for batch in _batches(candidates, ID_BATCH):
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
        from clerksync.orgsync import PendingPrune, reconcile_organizations, settle

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

        from clerksync.mongo import describe_mongo_error

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
    for batch in _batches(linked, CURSOR_BATCH):
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


#: promote/demote wait this long for a write-back another process is running on the user
#: (a lease and a bit): it finishes, sees the change and lets go, then ours goes
INLINE_WAIT = LEASE.total_seconds() * 1.5


@dataclass(frozen=True)
class SetAdminResult:
    """What promote/demote did. ``user``: the user's documented JSON view (``public_view``);
    ``clerk``: ``updated``, ``waiting`` (no key), ``not linked`` (the app's own user, no
    Clerk id) or ``failed``, with ``error``."""

    user: Mapping[str, Any]
    clerk: str
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The documented ``promote``/``demote --json`` keys (``error`` only when failed)."""
        data: dict[str, Any] = {"user": dict(self.user), "clerk": self.clerk}
        if self.error is not None:
            data["error"] = self.error
        return data


def set_admin(
    store: UserStore,
    gateway: ClerkGateway | None,
    ident: str,
    value: bool,
    *,
    limits: Limits | None = None,
) -> SetAdminResult:
    """Set the admin flag in MongoDB (durably, with the write-back marked), then write it into
    Clerk through the same claim as the workers: if one is writing this user, this waits
    for it, so the last write Clerk sees is the newest state.

    A key for another Clerk instance than the database's is refused before any change
    (``InstanceMismatch``): its 404 would otherwise drop the write-back. MongoDB keeps
    the change whenever Clerk fails; the receiver or ``sync-metadata`` finishes it.
    """
    from clerksync.clerk import default_rate
    from clerksync.instance import InstanceMismatch
    from clerksync.users import public_view

    schema = store.schema
    doc = store.find_user(ident)
    clerk_id = doc.get(schema.users.clerk_id)
    linked = isinstance(clerk_id, str) and CLERK_USER_ID.match(clerk_id) is not None
    guard = None
    # A person is waiting: a few quick retries, then the mark stays for the workers.
    if gateway is not None and linked:
        limits = limits or Limits(
            pacer=instance_pacer(default_rate(gateway.secret_key)),
            policy=RetryPolicy(base=0.25, cap=2.0, attempts=3),
            per_user=PerUserWindow(),
        )
        guard = InstanceGuard(store, gateway)
        problem = call_with_retries(
            functools.partial(guard.problem, fresh=True), limits.pacer, policy=limits.policy
        )
        if problem is not None:
            raise InstanceMismatch(
                f"{problem}: nothing was changed. Check the key and URL; if this database "
                "really moves to that instance, run `clerksync reconcile --rebind`."
            )
    doc = store.set_admin(doc["_id"], value)
    user = public_view(doc, schema)
    if not linked:
        return SetAdminResult(user, "not linked")  # the app's own user: nothing in Clerk
    if gateway is None or limits is None:
        return SetAdminResult(user, "waiting")
    keeper = LeaseKeeper(store.queue)
    key = {"_id": doc["_id"]}
    deadline = time.monotonic() + INLINE_WAIT
    try:
        while True:
            outcome = write_back(
                store.queue, gateway, key, limits, keeper, due_only=False, inline=True, guard=guard
            )
            if outcome.outcome != "busy":
                break
            if store.queue.next_try(key) is None:
                # The worker that held it finished after our change: it wrote our state.
                return SetAdminResult(user, "updated")
            if time.monotonic() > deadline:
                error = "another process kept this user busy; its write-back is queued"
                return SetAdminResult(user, "failed", error)
            limits.policy.sleep(0.1)
    finally:
        keeper.stop()
    if outcome.outcome in ("written", "unchanged"):
        return SetAdminResult(user, "updated")
    return SetAdminResult(user, "failed", outcome.error or outcome.outcome)
