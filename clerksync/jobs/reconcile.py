"""``reconcile``: bring MongoDB in line with Clerk, every kind the same way.

Each kind (``clerksync.kinds.registry``, parents first) is walked through its instance-wide
Backend API list into the one page writer (``clerksync.jobs.walk``), while a second thread
reads the ids MongoDB holds; then the orphan pass (``clerksync.jobs.orphans``) compares the
two, confirms each candidate in Clerk, and, with ``prune``, deletes every kind's orphans or
none. Every request passes one sliding-window pacer under the instance limit; a page the
SDK's models would reject is read as raw JSON, so no object is lost to one odd record.

First the database's Clerk instance is checked (``clerksync.store.instance``): against
another instance nothing runs until ``rebind``; then what a stopped run's pages owed their
parents is recomputed (``clerksync.store.owed``). Memory stays flat: one page at a time, and
the ids seen and held in temporary on-disk SQLite tables, closed whatever happens.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from clerksync.clerk.answers import FeatureDisabled, OrganizationsDisabled
from clerksync.clerk.gateway import ClerkGateway
from clerksync.clerk.pacing import instance_pacer
from clerksync.errors import ClerkApiError, ClerkSyncError
from clerksync.jobs.common import Progress, call_with_retries
from clerksync.jobs.orphans import OrphanPass, settle, snapshot
from clerksync.jobs.prune import PruneRun
from clerksync.jobs.walk import KindSummary, id_table, walk
from clerksync.kinds.base import Kind
from clerksync.kinds.registry import BY_NAME, prune_order
from clerksync.kinds.user import USER
from clerksync.store.database import Store
from clerksync.store.instance import ensure_same_instance
from clerksync.store.owed import sweep
from clerksync.store.users import writer


class PruneInterrupted(ClerkSyncError):
    """A reconcile failed after its prune had deleted some: the one line names the run that
    puts them back. Exits as the failure that stopped it would."""

    def __init__(self, cause: ClerkSyncError, run_id: str) -> None:
        super().__init__(
            f"{cause} (prune run {run_id} had deleted some already: "
            f"`clerksync reconcile --undo-prune {run_id}` puts them back)"
        )
        self.exit_code = cause.exit_code
        self.run_id = run_id


@dataclass(frozen=True)
class ReconcileResult:
    """What ``reconcile`` did (or, with ``dry_run``, would do): one ``KindSummary`` per kind,
    the Clerk instance and how the binding went (``new``, ``same``, ``rebound``, ``not
    yet``), and the prune run that can be undone (set whenever anything was pruned)."""

    kinds: Mapping[str, KindSummary]
    dry_run: bool = False
    instance: str | None = None
    bound: str | None = None
    prune_run: str | None = None

    @property
    def users(self) -> KindSummary:
        return self.kinds[USER.name]

    def refusals(self) -> str:
        """Why a prune was refused, for every kind that says so ("" when none did)."""
        return " ".join(s.prune_refused for s in self.kinds.values() if s.prune_refused)

    def to_json(self) -> dict[str, Any]:
        """The documented ``reconcile --json`` keys: the users' counts at the top level
        (``clerk_users``, ``mongo_users``, …), then one object per other kind reconciled
        under its plural, with ``note``/``prune_refused`` only when set."""
        users = asdict(self.users)
        data: dict[str, Any] = {
            "clerk_users": users.pop("clerk"),
            "mongo_users": users.pop("mongo"),
        }
        users.pop("note")
        data.update(users)
        data.update(instance=self.instance, bound=self.bound, prune_run=self.prune_run)
        for name, summary in self.kinds.items():
            if name == USER.name:
                continue
            part = asdict(summary)
            part.pop("adopted")
            for optional in ("note", "prune_refused"):
                if part[optional] is None:
                    part.pop(optional)
            data[BY_NAME[name].plural] = part
        return data


def reconcile(
    store: Store,
    gateway: ClerkGateway,
    *,
    rate: float,
    dry_run: bool = False,
    prune: bool = False,
    allow_mass_prune: bool = False,
    rebind: bool = False,
    progress: Progress | None = None,
) -> ReconcileResult:
    """Create the missing, update the stale, leave the newer, report orphans; with ``prune``
    delete them, every kind or none, journaled under one run ``undo_prune`` undoes (a guard
    refuses when Clerk lists none of a kind, or more than a small share would go, unless
    ``allow_mass_prune``: ``clerksync.jobs.prune``). See the module docstring."""
    pacer = instance_pacer(rate)
    binding = call_with_retries(
        functools.partial(ensure_same_instance, store, gateway, rebind=rebind, dry_run=dry_run),
        pacer,
    )
    if not dry_run:  # what a stopped run's pages owed their parents (a payer's plan)
        sweep(store)
    writes = writer(store)
    run = PruneRun(writes) if prune and not dry_run else None
    kinds = reconciled(store)
    summaries = {kind.name: KindSummary() for kind in kinds}
    orphans = OrphanPass(store, gateway, pacer, prune=prune)
    with contextlib.ExitStack() as tables:
        try:
            walked: dict[str, tuple[sqlite3.Connection, sqlite3.Connection]] = {}
            for kind in kinds:
                summary = summaries[kind.name]
                try:
                    walked[kind.name] = _walk_kind(
                        writes, gateway, pacer, kind, summary, tables, dry_run, progress
                    )
                except FeatureDisabled as exc:  # a note, not a failure
                    summary.note = f"{_off_note(kind, exc)}: nothing to sync"
            # Every kind's orphans and guard first, then the deletes, if no guard refused:
            # a cascade must not take what another guard kept.
            for kind in prune_order():
                if kind.name in walked:
                    held, seen = walked[kind.name]
                    orphans.run(kind, held, seen, summaries[kind.name])
            settle(orphans, run, allow_mass_prune=allow_mass_prune)
            for kind in kinds:
                summaries[kind.name].mongo = store.estimated_count(kind)
        except ClerkSyncError as exc:
            if run is not None and run.journaled:
                raise PruneInterrupted(exc, run.run_id) from exc
            raise
        finally:
            orphans.close()
    prune_run = run.run_id if run is not None and run.journaled else None
    return ReconcileResult(
        summaries,
        dry_run=dry_run,
        instance=binding.get("instance"),
        bound=binding.get("bound"),
        prune_run=prune_run,
    )


def reconciled(store: Store) -> tuple[Kind, ...]:
    """The kinds reconcile walks: those the app keeps that Clerk lists (parents first)."""
    return tuple(kind for kind in store.kinds if kind.listing is not None)


def _off_note(kind: Kind, exc: FeatureDisabled) -> str:
    """Why a list said its feature is off: the listing's words, or organizations' (any
    list of an instance without them answers Clerk's organizations code)."""
    if isinstance(exc, OrganizationsDisabled) or kind.listing is None:
        return "organizations are not enabled on this Clerk instance"
    return kind.listing.off_note


def _walk_kind(
    writes: Any,
    gateway: ClerkGateway,
    pacer: Any,
    kind: Kind,
    summary: KindSummary,
    tables: contextlib.ExitStack,
    dry_run: bool,
    progress: Progress | None,
) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """Walk one kind while a second thread reads the ids MongoDB holds: (held, seen), both
    closed with ``tables`` whatever happens (a failed page included)."""
    seen = id_table()
    tables.callback(seen.close)
    tick = None
    if progress is not None and kind is USER:  # the bar follows the users, whose count it has
        total = None
        with contextlib.suppress(ClerkApiError):
            total = call_with_retries(gateway.count_users, pacer)
        tick = functools.partial(_report, progress, total)
    with ThreadPoolExecutor(1) as snapshotter:
        held_future = snapshotter.submit(snapshot, writes.store, kind)
        tables.callback(_close_when_done, held_future)
        walk(writes, gateway, pacer, kind, seen, summary, dry_run=dry_run, progress=tick)
        held: sqlite3.Connection = held_future.result()
    return held, seen


def _report(progress: Progress, total: int | None, done: int) -> None:
    progress(done, total)


def _close_when_done(future: Any) -> None:
    """Close the snapshot's table once its thread is done, even when the walk failed."""
    with contextlib.suppress(Exception):
        future.result().close()
