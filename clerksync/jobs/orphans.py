"""Reconcile's orphan pass and prune, one for every kind.

An orphan is held in MongoDB and not listed by Clerk, and not found when Clerk is asked:
a candidate is looked up before it is reported or pruned (one that signed up after its
page was read, or one offset paging skipped when an earlier one was deleted mid-run, is no
orphan). The ids MongoDB holds and those Clerk listed are two sorted on-disk tables merged
in order: memory stays flat.

A prune deletes every kind or none: each kind's guard (``clerksync.jobs.prune``) is asked
before the first delete, and an object a parent's prune takes along (``Kind.pruned_with``:
a pruned user's memberships) counts under the parent's guard, not as an orphan of its own.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from string import Formatter
from typing import Any
from urllib.parse import quote

from clerksync.clerk.gateway import ID_BATCH, ClerkGateway
from clerksync.clerk.pacing import SlidingWindowPacer
from clerksync.jobs.common import batches, call_with_retries
from clerksync.jobs.prune import PruneRun, prune_refusal
from clerksync.jobs.walk import KindSummary, id_table
from clerksync.kinds.base import Kind, Listing
from clerksync.kinds.registry import BY_NAME
from clerksync.store.database import Store


@dataclass
class PendingPrune:
    """One kind's confirmed orphans, waiting until every kind's guard has been asked."""

    kind: Kind
    summary: KindSummary
    orphans: sqlite3.Connection  # an id table: closed by ``settle``
    refusal: str | None

    def holds(self, clerk_id: str) -> bool:
        found = self.orphans.execute("SELECT 1 FROM ids WHERE id = ?", (clerk_id,)).fetchone()
        return found is not None


def template_fields(listing: Listing) -> set[str]:
    """The logical fields a listing's confirmation reads from a stored document."""
    fields = {f for t in listing.one for _, f, _, _ in Formatter().parse(t) if f and f != "id"}
    fields |= {f for f in (listing.parent_field, listing.member_field) if f}
    return fields


def one_path(listing: Listing, clerk_id: str, view: Mapping[str, Any]) -> str | None:
    """The first of ``listing.one``'s paths whose fields the document has, filled in."""
    values = {"id": clerk_id, **view}
    for template in listing.one:
        names = [f for _, f, _, _ in Formatter().parse(template) if f]
        if all(isinstance(values.get(n), str) and values[n] for n in names):
            return template.format(**{n: quote(str(values[n]), safe="") for n in names})
    return None


def merge_missing(held: sqlite3.Connection, seen: sqlite3.Connection) -> Iterator[str]:
    """Ids in ``held`` and not in ``seen``: two sorted streams merged, flat memory."""
    known = (row[0] for row in seen.execute("SELECT id FROM ids ORDER BY id"))
    next_known: str | None = next(known, None)
    for (clerk_id,) in held.execute("SELECT id FROM ids ORDER BY id"):
        while next_known is not None and next_known < clerk_id:
            next_known = next(known, None)
        if next_known != clerk_id:
            yield clerk_id


def snapshot(store: Store, kind: Kind) -> sqlite3.Connection:
    """The kind's Clerk ids MongoDB holds now, in an id table (no sort asked of the server;
    the app's own documents, without one of the kind's ids, are no orphans)."""
    table = id_table()
    try:
        for batch in batches(store.held_ids(kind), 1000):
            table.executemany("INSERT OR IGNORE INTO ids VALUES (?)", [(i,) for i in batch])
    except BaseException:
        table.close()
        raise
    return table


class OrphanPass:
    """Finds each kind's orphans, in ``prune_order`` (parents whose prune takes a kind
    along come before it), and keeps them in ``pending`` when a prune is asked."""

    def __init__(
        self, store: Store, gateway: ClerkGateway, pacer: SlidingWindowPacer, *, prune: bool
    ) -> None:
        self.store = store
        self.gateway = gateway
        self.pacer = pacer
        self.prune = prune
        self.pending: list[PendingPrune] = []

    def run(
        self,
        kind: Kind,
        held: sqlite3.Connection,
        seen: sqlite3.Connection,
        summary: KindSummary,
    ) -> None:
        """Report the kind's orphans in ``summary``; with a prune, keep them and the guard's
        answer for ``settle``."""
        found = id_table()
        try:
            (held_count,) = held.execute("SELECT count(*) FROM ids").fetchone()
            for batch in batches(merge_missing(held, seen), ID_BATCH):
                still_there = self._confirm(kind, batch)
                for clerk_id in batch:
                    if clerk_id not in still_there:
                        summary.orphan(clerk_id)
                        found.execute("INSERT OR IGNORE INTO ids VALUES (?)", (clerk_id,))
        except BaseException:
            found.close()
            raise
        if not (self.prune and summary.orphaned):
            found.close()
            return
        refusal = prune_refusal(summary.orphaned, held_count, summary.clerk, kind.plural)
        self.pending.append(PendingPrune(kind, summary, found, refusal))

    def _confirm(self, kind: Kind, batch: list[str]) -> set[str]:
        """Of these candidates, those still in Clerk, or taken along by a parent's pending
        prune (counted under the parent's guard, the same in a preview and the run). Clerk
        is asked the way the kind's ``Listing`` says: by ids, per parent, or one by one."""
        listing = kind.listing
        assert listing is not None
        taken: set[str] = set()
        views: dict[str, dict[str, Any]] = {}
        if kind.pruned_with or listing.per_parent or listing.one:
            section = self.store.schema.section(kind)
            wanted = {*kind.parents.values(), *template_fields(listing)}
            fields = {section.require(f): 1 for f in wanted}
            for clerk_id, doc in self.store.stored_docs(kind, batch, fields).items():
                views[clerk_id] = {f: doc.get(section.require(f)) for f in wanted}
            for clerk_id, view in views.items():
                parents = {p: str(view.get(kind.parents[p])) for p in kind.pruned_with}
                if any(self._going(BY_NAME[p], parent) for p, parent in parents.items()):
                    taken.add(clerk_id)
        remaining = [i for i in batch if i not in taken]
        known: set[str] = set()
        if listing.by_ids and remaining:
            find = functools.partial(self.gateway.find_ids, listing.path, listing.by_ids)
            found = call_with_retries(functools.partial(find, remaining), self.pacer)
            known = {str(item.get("id")) for item in found}
        elif listing.per_parent and listing.parent_field:
            by_parent: dict[str, list[str]] = defaultdict(list)
            for clerk_id in (i for i in remaining if i in views):
                view = views[clerk_id]
                member = view.get(listing.member_field) if listing.member_field else clerk_id
                by_parent[str(view.get(listing.parent_field))].append(str(member))
            for parent, members in by_parent.items():
                path = listing.per_parent.format(parent=quote(parent, safe=""))
                for start in range(0, len(members), ID_BATCH):
                    chunk = members[start : start + ID_BATCH] if listing.member_param else []
                    find = functools.partial(
                        self.gateway.find_under, path, listing.member_param, chunk
                    )
                    known |= {str(i.get("id")) for i in call_with_retries(find, self.pacer)}
                    if not listing.member_param:
                        break  # the parent's whole list, once
        elif listing.one:
            paths: dict[str, list[str]] = defaultdict(list)
            for clerk_id in (i for i in remaining if i in views):
                found_path = one_path(listing, clerk_id, views[clerk_id])
                if found_path is not None:
                    paths[found_path].append(clerk_id)
            for one in paths:  # one request per path: a payer's items are one
                find = functools.partial(self.gateway.find_one, one, listing.one_key)
                known |= {str(i.get("id")) for i in call_with_retries(find, self.pacer)}
        return taken | (known & set(batch))

    def _going(self, kind: Kind, clerk_id: str) -> bool:
        """Will a pending prune of ``kind`` take this object?"""
        return any(p.kind is kind and p.holds(clerk_id) for p in self.pending)

    def close(self) -> None:
        for pending in self.pending:
            pending.orphans.close()
        self.pending.clear()


def settle(orphans: OrphanPass, run: PruneRun | None, *, allow_mass_prune: bool) -> None:
    """Prune every kind, or none: when a guard refuses (and ``allow_mass_prune`` is not
    given), each kind's summary says why nothing was deleted. In ``prune_order``: a
    parent's cascade journals what it takes before the kind's own orphans go. ``run`` is
    None on a dry run (the guards' answers only)."""
    pending = orphans.pending
    try:
        refused = [p for p in pending if p.refusal]
        if refused and not allow_mass_prune:
            names = " and ".join(p.kind.plural for p in refused)
            for p in pending:
                p.summary.prune_refused = p.refusal or (
                    f"nothing was pruned: the {names} prune was refused (a prune deletes "
                    "every kind or none). Nothing was deleted."
                )
            return
        if run is None:
            return
        for p in pending:
            rows = (row[0] for row in p.orphans.execute("SELECT id FROM ids ORDER BY id"))
            for batch in batches(rows, ID_BATCH):
                p.summary.pruned += run.prune(p.kind, batch)
    finally:
        orphans.close()
