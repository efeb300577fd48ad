"""Reconcile of organizations and memberships: the instance-wide lists, in bulk.

``GET /organizations`` and ``GET /organization_memberships`` list the whole
instance, 500 a page, with a ``total_count``: a backfill costs
``ceil(orgs / 500) + ceil(memberships / 500)`` requests, never one per
organization, and the walk stops on the page that reaches the total (no empty
page to learn it). Each page goes through the receiver's parsing and ordering
rules in bulk (``OrgStore.upsert_many``: one planning read, ``insert_many`` for
the new, ordered upserts for the older, nothing for the rest). The next page is
in flight while one is written.

Orphans (in MongoDB, not in Clerk) are confirmed in Clerk before they are
reported or pruned, as users' are: organizations 100 ids a request, memberships
per organization that has candidates (100 users a request). Offset paging can
skip an item when an earlier one is deleted mid-run; the confirmation keeps
such an item from being called an orphan, and the next run picks it up.

An instance without the organizations feature answers 403
``organization_not_enabled_in_instance``: that is a note, not a failure.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clerksync.clerk.gateway import ID_BATCH, PAGE_SIZE, ClerkGateway, OrganizationsDisabled
from clerksync.clerk.pacing import SlidingWindowPacer
from clerksync.errors import InvalidEvent
from clerksync.jobs.prune import prune_refusal
from clerksync.kinds.orgs import parse_membership, parse_organization

if TYPE_CHECKING:
    from clerksync.jobs.prune import PruneRun
    from clerksync.store.orgs import Kind, OrgStore
    from clerksync.store.users import UserStore

DISABLED_NOTE = "organizations are not enabled on this Clerk instance: nothing to sync"
MAX_ORPHANS_LISTED = 50

Page = tuple[list[dict[str, Any]], int]


def counters() -> dict[str, Any]:
    """The users' counters, for one more kind."""
    return {
        "clerk": 0,
        "mongo": 0,
        "created": 0,
        "updated": 0,
        "unchanged": 0,
        "orphaned": 0,
        "pruned": 0,
        "invalid": 0,
        "orphans": [],
    }


@dataclass
class PendingPrune:
    """One kind's confirmed orphans, waiting until every kind's guard has been asked: a
    prune deletes nothing unless no guard refuses (an organization's or user's cascade
    would otherwise take memberships the memberships' guard refused)."""

    name: str  # users, organizations, memberships
    summary: dict[str, Any]
    orphans: sqlite3.Connection  # an id table (``sync._id_table``): closed by ``settle``
    prune_batch: Callable[[list[str]], int] | None  # None: a dry run
    refusal: str | None


def settle(pending: list[PendingPrune], *, allow_mass_prune: bool) -> None:
    """Prune every kind, or none: when a guard refuses (and ``allow_mass_prune`` is not
    given), each kind's summary says why nothing was deleted. Users first (their cascade
    journals their memberships), then memberships, then organizations; each counts its
    deletes in its summary's ``pruned``."""
    from clerksync.jobs.common import batches

    try:
        refused = [p for p in pending if p.refusal]
        if refused and not allow_mass_prune:
            names = " and ".join(p.name for p in refused)
            for p in pending:
                p.summary["prune_refused"] = p.refusal or (
                    f"nothing was pruned: the {names} prune was refused (a prune deletes "
                    "every kind or none). Nothing was deleted."
                )
            return
        for name in ("users", "memberships", "organizations"):
            for p in (p for p in pending if p.name == name):
                prune_batch = p.prune_batch
                if prune_batch is None:
                    continue  # a dry run
                rows = (row[0] for row in p.orphans.execute("SELECT id FROM ids ORDER BY id"))
                for batch in batches(rows, ID_BATCH):
                    p.summary["pruned"] += prune_batch(batch)
    finally:
        for p in pending:
            p.orphans.close()


def reconcile_organizations(
    store: UserStore,
    gateway: ClerkGateway,
    bucket: SlidingWindowPacer,
    *,
    dry_run: bool = False,
    prune: bool = False,
    allow_mass_prune: bool = False,
    run: PruneRun | None = None,
    pending: list[PendingPrune] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Bring MongoDB's organizations and memberships in line with Clerk's: two summaries.
    Pruned organizations and memberships are confirmed absent from Clerk first, then go
    through ``run`` (the reconcile's ``PruneRun``; one is made when none is given): each,
    and the memberships an organization takes with it, journaled for ``undo_prune`` before
    it is tombstoned and deleted. With ``pending`` (reconcile's, holding the users'), the
    prunes are added to it for the caller to ``settle`` once every kind was walked;
    without, they are settled here (both kinds, or neither)."""
    from clerksync.jobs.common import call_with_retries
    from clerksync.jobs.prune import PruneRun
    from clerksync.jobs.reconcile import _id_table

    if prune and not dry_run and run is None:
        run = PruneRun(store)
    own = pending is None
    waiting: list[PendingPrune] = [] if pending is None else pending
    orgs = store.orgs
    org_summary, member_summary = counters(), counters()
    seen_orgs, seen_members = _id_table(), _id_table()
    try:
        try:
            _walk(
                orgs,
                orgs.orgs_kind,
                lambda offset: call_with_retries(
                    functools.partial(gateway.list_organizations, offset=offset), bucket
                ),
                parse_organization,
                seen_orgs,
                org_summary,
                dry_run,
            )
        except OrganizationsDisabled:
            for summary in (org_summary, member_summary):
                summary["note"] = DISABLED_NOTE
            org_summary["mongo"] = orgs.organizations.estimated_document_count()
            member_summary["mongo"] = orgs.memberships.estimated_document_count()
            return org_summary, member_summary
        _walk(
            orgs,
            orgs.members_kind,
            lambda offset: call_with_retries(
                functools.partial(gateway.list_memberships, offset=offset), bucket
            ),
            parse_membership,
            seen_members,
            member_summary,
            dry_run,
        )

        def confirm_orgs(batch: list[str]) -> set[str]:
            found = call_with_retries(functools.partial(gateway.get_organizations, batch), bucket)
            return {str(o.get("id")) for o in found} & set(batch)

        def confirm_members(batch: list[str]) -> set[str]:
            m = orgs.members_map
            docs = orgs.memberships.find(
                {m.clerk_id: {"$in": batch}},
                {m.clerk_id: 1, m.organization_id: 1, m.user_id: 1},
            )
            by_org: dict[str, list[str]] = defaultdict(list)
            known: set[str] = set()
            for doc in docs:
                org_id, user_id = str(doc.get(m.organization_id)), str(doc.get(m.user_id))
                if user_going(user_id):
                    # A pruned user's cascade takes it: it counts under the users' guard, the
                    # same in the preview and the run, not as a memberships' orphan.
                    known.add(str(doc.get(m.clerk_id)))
                    continue
                by_org[org_id].append(user_id)
            for org_id, users in by_org.items():
                for start in range(0, len(users), ID_BATCH):
                    found = call_with_retries(
                        functools.partial(
                            gateway.memberships_of, org_id, users[start : start + ID_BATCH]
                        ),
                        bucket,
                    )
                    known |= {str(f.get("id")) for f in found}
            return known & set(batch)

        def user_going(user_id: str) -> bool:
            """Will the users' pending prune take this user (and its memberships)?"""
            return any(
                p.name == "users"
                and p.orphans.execute("SELECT 1 FROM ids WHERE id = ?", (user_id,)).fetchone()
                for p in waiting
            )

        # Memberships first, as they are pruned: an organization's own go as its orphans.
        for kind, seen, confirm, prune_batch, summary, name in (
            (
                orgs.members_kind,
                seen_members,
                confirm_members,
                run.prune_memberships if run else None,
                member_summary,
                "memberships",
            ),
            (
                orgs.orgs_kind,
                seen_orgs,
                confirm_orgs,
                run.prune_organizations if run else None,
                org_summary,
                "organizations",
            ),
        ):
            found = _orphans(orgs, kind, seen, confirm, summary, prune, name)
            if found is not None:
                orphans, refusal = found
                waiting.append(PendingPrune(name, summary, orphans, prune_batch, refusal))
        if own:
            settle(waiting, allow_mass_prune=allow_mass_prune)
    finally:
        seen_orgs.close()
        seen_members.close()
    org_summary["mongo"] = orgs.organizations.estimated_document_count()
    member_summary["mongo"] = orgs.memberships.estimated_document_count()
    return org_summary, member_summary


def _walk(
    orgs: OrgStore,
    kind: Kind,
    fetch: Callable[[int], Page],
    parse: Callable[[Any], Any],
    seen: sqlite3.Connection,
    summary: dict[str, Any],
    dry_run: bool,
) -> None:
    """Page through one instance-wide list (offset, +created_at), one page ahead."""

    def parsed(raw: Any) -> Any:
        try:
            return parse(raw)
        except InvalidEvent:
            return None

    def fetch_parsed(offset: int, prepare: bool) -> tuple[list[Any], int, int, dict[str, Any]]:
        """A page, parsed (and with ``prepare``, the pages before being all new, its new
        documents made) in the reader's thread while the page before is written."""
        page, total = fetch(offset)
        items = [parsed(raw) for raw in page]
        prepared = orgs.new_documents(kind, (i for i in items if i)) if prepare else {}
        return items, len(page), total, prepared

    all_new = False  # was the last page all new? then insert this one without planning
    with ThreadPoolExecutor(1) as reader:
        offset = 0
        upcoming = reader.submit(fetch_parsed, offset, False)
        while True:
            parsed_page, listed, total, prepared = upcoming.result()
            more = listed == PAGE_SIZE and offset + PAGE_SIZE < total
            if more:
                upcoming = reader.submit(fetch_parsed, offset + PAGE_SIZE, all_new and not dry_run)
            items = [item for item in parsed_page if item is not None]
            summary["invalid"] += listed - len(items)
            summary["clerk"] += listed
            if items:
                seen.executemany("INSERT OR IGNORE INTO ids VALUES (?)", [(i.id,) for i in items])
                counts = orgs.upsert_many(
                    kind, items, dry_run=dry_run, assume_new=all_new, prepared=prepared
                )
                all_new = counts["created"] == len(items)
                for key, value in counts.items():
                    summary[key] += value
            if not more:
                return
            offset += PAGE_SIZE


def _orphans(
    orgs: OrgStore,
    kind: Kind,
    seen: sqlite3.Connection,
    confirm: Callable[[list[str]], set[str]],
    summary: dict[str, Any],
    prune: bool,
    name: str,
) -> tuple[sqlite3.Connection, str | None] | None:
    """Held in MongoDB, not listed by Clerk, and not found when asked: reported. With
    ``prune``, the orphans' id table and the guard's answer (``clerksync.prune``: never
    when Clerk lists none, nor more than a small share); the caller settles them."""
    from clerksync.jobs.common import batches
    from clerksync.jobs.reconcile import _id_table, _merge_missing

    held, found = _id_table(), _id_table()
    try:
        for batch in batches(orgs.held_ids(kind), 1000):
            held.executemany("INSERT OR IGNORE INTO ids VALUES (?)", [(i,) for i in batch])
        (held_count,) = held.execute("SELECT count(*) FROM ids").fetchone()
        for batch in batches(_merge_missing(held, seen), ID_BATCH):
            still_there = confirm(batch)
            for clerk_id in batch:
                if clerk_id in still_there:
                    continue
                summary["orphaned"] += 1
                if len(summary["orphans"]) < MAX_ORPHANS_LISTED:
                    summary["orphans"].append(clerk_id)
                found.execute("INSERT OR IGNORE INTO ids VALUES (?)", (clerk_id,))
    except BaseException:
        found.close()
        raise
    finally:
        held.close()
    if not (prune and summary["orphaned"]):
        found.close()
        return None
    return found, prune_refusal(summary["orphaned"], held_count, summary["clerk"], name)
