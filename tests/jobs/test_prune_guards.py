"""A prune deletes every kind or none: each kind's guard is asked before the first delete,
and what a cascade would take counts under the guard of what it takes."""

from __future__ import annotations

import json

from clerksync.jobs.prune import journal
from clerksync.store.database import Store
from tests.jobs.test_prune_orgs import FAST, drop_user, reconciled, seed, snapshot
from tests.support.fakeclerk import FakeClerk


def test_an_organization_cascade_cannot_take_memberships_their_guard_kept(
    cli: object, store: Store, fake_clerk: FakeClerk
) -> None:
    seed(fake_clerk, 20, 12, [0, 1, 2, 3, 4])  # 60 memberships
    reconciled(cli)
    for org in ("org_p0003", "org_p0004", "org_p0005"):  # 3 of 12 organizations (allowed)…
        fake_clerk.remove_org(org)  # …and their 15 of 60 memberships (a mass prune)
    before = snapshot(store)
    out = cli("reconcile", "--prune", "--yes", "--json", *FAST)  # type: ignore[operator]
    assert out.exit_code == 1
    summary = json.loads(out.stdout)
    assert "15 of 60 memberships" in summary["memberships"]["prune_refused"]
    assert "nothing was pruned" in summary["organizations"]["prune_refused"]
    assert summary["organizations"]["pruned"] == 0 and summary["memberships"]["pruned"] == 0
    assert snapshot(store) == before and journal(store).count_documents({}) == 0


def test_a_refused_users_prune_deletes_no_membership_either(
    cli: object, store: Store, fake_clerk: FakeClerk
) -> None:
    seed(fake_clerk, 20, 1, [0, 11, 12, 13, 14, 15])
    reconciled(cli)
    for u in range(11):  # 11 of 20 users: the users' guard refuses
        drop_user(fake_clerk, f"user_m{u:04d}")
    before = snapshot(store)
    out = cli("reconcile", "--prune", "--yes", *FAST)  # type: ignore[operator]
    assert out.exit_code == 1 and "11 of 20 users" in out.stderr
    assert "--undo-prune" not in out.stderr
    assert snapshot(store) == before and journal(store).count_documents({}) == 0
