"""``sync-metadata``: make every user's Clerk ``publicMetadata`` hold what MongoDB says."""

from __future__ import annotations

import collections
import functools
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from clerksync.clerk.gateway import ID_BATCH, ClerkGateway
from clerksync.jobs.common import CURSOR_BATCH, Progress, batches, call_with_retries
from clerksync.mapping import bookkeeping as bk
from clerksync.mapping.users import clerk_copy_differs
from clerksync.store.database import Store, clerk_id_filter
from clerksync.store.instance import ensure_same_instance
from clerksync.writeback.queue import queue_of
from clerksync.writeback.writeback import (
    LeaseKeeper,
    Limits,
    WriteBack,
    default_limits,
    write_claimed,
)

MAX_BACKLOG = 500  # queued metadata writes before reading pauses (bounds memory)


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
    store: Store,
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
    keeper = LeaseKeeper(queue_of(store))
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
            queue_of(store),
            gateway,
            doc,
            limits,
            clerk_copy=copy,
            inline=True,
            finish=lambda done: 0,
        )

    finished: list[tuple[Mapping[str, Any], Mapping[str, Any], bool]] = []

    def finish_books() -> None:
        queue_of(store).finish(finished)
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
            for batch in batches(cursor, ID_BATCH):
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
                    elif clerk_copy_differs(clerk[doc[clerk_id]], doc, schema.users):
                        to_write.append(doc)
                    else:
                        summary["unchanged"] += 1
                        if bk.has(doc, bk.DUE):  # Clerk already agrees: just clear the mark
                            agreed.append((doc, clerk[doc[clerk_id]]))
                if dry_run:
                    would_change.extend(d[clerk_id] for d in to_write)
                    summary["updated"] += len(to_write)
                else:
                    queue_of(store).settle(agreed)
                    claimed = (
                        queue_of(store).claim_many([d["_id"] for d in to_write]) if to_write else []
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
