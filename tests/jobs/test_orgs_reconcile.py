"""reconcile of organizations and memberships against the fake Clerk over HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clerksync.kinds.membership import MEMBERSHIP, parse_membership
from clerksync.kinds.organization import ORGANIZATION, parse_organization
from clerksync.store.database import Store
from clerksync.store.hooks import Hooks
from tests.support.fakeclerk import FakeClerk, clerk_membership, clerk_organization
from tests.support.writes import upsert_outcome

FAST = ("--rate", "1000")


def seed(fake: FakeClerk, orgs: int, per_org: int) -> None:
    for o in range(orgs):
        fake.add_org(org_id=f"org_s{o:04d}", name=f"Org {o}", created_at=100 + o, updated_at=500)
        for u in range(per_org):
            fake.add_membership(
                f"org_s{o:04d}",
                f"user_s{u:04d}",
                membership_id=f"orgmem_s{o:04d}_{u:03d}",
                created_at=1000 + o * per_org + u,
                updated_at=500,
            )


def test_backfill_pages_instance_wide_then_a_rerun_writes_nothing(
    cli, store: Store, fake_clerk: FakeClerk, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(fake_clerk, 120, 10)  # 120 orgs, 1,200 memberships
    made: list[str] = []  # the ids whose documents the reader thread made ahead
    real = Hooks.prepare

    def spy(self: Hooks, items: Any, now: Any) -> dict[str, dict[str, Any]]:
        docs = real(self, items, now)
        made.extend(docs)
        return docs

    monkeypatch.setattr(Hooks, "prepare", spy)
    fake_clerk.counts.clear()
    result = cli("reconcile", "--json", *FAST)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {k: summary["organizations"][k] for k in ("clerk", "mongo", "created", "orphaned")} == {
        "clerk": 120,
        "mongo": 120,
        "created": 120,
        "orphaned": 0,
    }
    members = summary["memberships"]
    assert (members["clerk"], members["created"], members["mongo"]) == (1200, 1200, 1200)
    # one page of organizations, three of memberships (500 + 500 + 200): never one per org
    assert fake_clerk.counts["GET /organizations"] == 1
    assert fake_clerk.counts["GET /organization_memberships"] == 3
    assert fake_clerk.counts["GET /organizations/{id}/memberships"] == 0
    assert store.collection(ORGANIZATION).find_one({"clerkId": "org_s0007"})["name"] == "Org 7"
    doc = store.collection(MEMBERSHIP).find_one({"clerkId": "orgmem_s0007_003"})
    assert (doc["organizationId"], doc["userId"], doc["role"]) == (
        "org_s0007",
        "user_s0003",
        "org:member",
    )
    # The third page's documents were made in the reader's thread (two all-new pages
    # before it): the same fields as the first page's.
    assert len(made) == 200 and "orgmem_s0115_003" in made  # the third page's, as inserted
    late = store.collection(MEMBERSHIP).find_one({"clerkId": "orgmem_s0115_003"})
    assert late is not None and late["organizationId"] == "org_s0115"
    assert {k: type(v) for k, v in late.items()} == {k: type(v) for k, v in doc.items()}

    again = json.loads(cli("reconcile", "--json", *FAST).stdout)
    for kind in ("organizations", "memberships"):
        assert again[kind]["created"] == 0 and again[kind]["updated"] == 0
    assert again["memberships"]["unchanged"] == 1200


def test_stale_are_updated_newer_kept_orphans_confirmed_then_pruned(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    seed(fake_clerk, 3, 2)
    # MongoDB: an older state of org 0, a newer one of org 1, an org and memberships Clerk lost
    upsert_outcome(
        store,
        ORGANIZATION,
        parse_organization(clerk_organization(org_id="org_s0000", name="Old", updated_at=100)),
    )
    upsert_outcome(
        store,
        ORGANIZATION,
        parse_organization(clerk_organization(org_id="org_s0001", name="Newer", updated_at=900)),
    )
    lost = clerk_organization(org_id="org_lost", updated_at=100)
    upsert_outcome(store, ORGANIZATION, parse_organization(lost))
    upsert_outcome(
        store,
        MEMBERSHIP,
        parse_membership(clerk_membership(org=lost, user_id="user_x", membership_id="orgmem_lost")),
    )
    kept_org = fake_clerk.orgs["org_s0002"]
    ghost = clerk_membership(org=kept_org, user_id="user_gh", membership_id="orgmem_ghost")
    upsert_outcome(store, MEMBERSHIP, parse_membership(ghost))
    fake_clerk.counts.clear()

    summary = json.loads(cli("reconcile", "--json", *FAST).stdout)
    o, m = summary["organizations"], summary["memberships"]
    assert (o["created"], o["updated"], o["unchanged"]) == (1, 1, 1)
    assert o["orphans"] == ["org_lost"] and o["pruned"] == 0
    assert sorted(m["orphans"]) == ["orgmem_ghost", "orgmem_lost"]
    assert store.collection(ORGANIZATION).find_one({"clerkId": "org_s0000"})["name"] == "Org 0"
    assert store.collection(ORGANIZATION).find_one({"clerkId": "org_s0001"})["name"] == "Newer"
    # orphans confirmed: one lookup of organization ids, one per org with candidates
    assert fake_clerk.counts["GET /organizations"] == 1 + 1
    assert fake_clerk.counts["GET /organizations/{id}/memberships"] == 2

    pruned = json.loads(cli("reconcile", "--prune", "--yes", "--json", *FAST).stdout)
    assert pruned["organizations"]["pruned"] == 1 and pruned["memberships"]["pruned"] == 2
    assert store.collection(ORGANIZATION).count_documents({"clerkId": "org_lost"}) == 0
    assert store.collection(MEMBERSHIP).count_documents({}) == 6
    assert (
        store.collection(MEMBERSHIP).count_documents(
            {"clerkId": {"$in": ["orgmem_ghost", "orgmem_lost"]}}
        )
        == 0
    )


def test_a_membership_that_paging_skipped_is_no_orphan(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    seed(fake_clerk, 1, 3)
    assert json.loads(cli("reconcile", "--json", *FAST).stdout)["memberships"]["created"] == 3
    # Offset paging skips one when an earlier one goes mid-run; Clerk still has it.
    fake_clerk.skipped_by_paging = {"orgmem_s0000_001"}
    fake_clerk.counts.clear()
    summary = json.loads(cli("reconcile", "--prune", "--yes", "--json", *FAST).stdout)
    assert summary["memberships"]["orphaned"] == 0 and summary["memberships"]["pruned"] == 0
    assert fake_clerk.counts["GET /organizations/{id}/memberships"] == 1  # the confirmation
    assert store.collection(MEMBERSHIP).count_documents({"clerkId": "orgmem_s0000_001"}) == 1


def test_dry_run_writes_nothing(cli, store: Store, fake_clerk: FakeClerk) -> None:
    seed(fake_clerk, 2, 2)
    summary = json.loads(cli("reconcile", "--dry-run", "--json", *FAST).stdout)
    assert summary["organizations"]["created"] == 2 and summary["memberships"]["created"] == 4
    assert store.collection(ORGANIZATION).count_documents({}) == 0
    assert store.collection(MEMBERSHIP).count_documents({}) == 0


def test_an_instance_without_organizations_is_a_note_not_a_failure(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    fake_clerk.add_user(user_id="user_only")
    fake_clerk.orgs_enabled = False
    result = cli("reconcile", "--json", *FAST)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["created"] == 1
    assert "not enabled" in summary["organizations"]["note"]
    assert "not enabled" in summary["memberships"]["note"]
    human = cli("reconcile", *FAST)
    assert human.exit_code == 0 and "organizations are not enabled" in human.stderr


def test_pruning_every_organization_is_refused_like_users(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    fake_clerk.add_user(user_id="user_keep")
    for i in range(3):  # MongoDB holds organizations; Clerk lists none (another instance?)
        org = clerk_organization(org_id=f"org_only_mongo{i}", updated_at=5)
        upsert_outcome(store, ORGANIZATION, parse_organization(org))
    result = cli("reconcile", "--prune", "--yes", "--json", *FAST)
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert "no organizations at all" in summary["organizations"]["prune_refused"]
    assert summary["organizations"]["pruned"] == 0
    assert store.collection(ORGANIZATION).count_documents({}) == 3
    allowed = cli("reconcile", "--prune", "--yes", "--allow-mass-prune", "--json", *FAST)
    assert json.loads(allowed.stdout)["organizations"]["pruned"] == 3


def test_an_app_without_organizations_gets_no_org_collections(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    fake_clerk.add_user(user_id="user_plain")
    assert cli("reconcile", "--json", *FAST).exit_code == 0
    names = set(store.db.list_collection_names())
    assert "organizations" not in names and "memberships" not in names
