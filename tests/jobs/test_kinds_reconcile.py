"""reconcile of the kinds beyond users and organizations (Clerk Billing's subscription items,
roles, permissions, invitations, domains, the waitlist) against the fake Clerk over HTTP:
one walker and one orphan pass for all of them, driven by each kind's ``Listing``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clerksync.kinds.registry import BY_NAME, KINDS
from clerksync.store.database import Store
from tests.support.fakeclerk import FakeClerk
from tests.support.fakelists import (
    LISTS,
    clerk_domain,
    clerk_invitation,
    clerk_permission,
    clerk_role,
    clerk_subscription_item,
    clerk_waitlist_entry,
)

FAST = ("--rate", "1000")
#: the list names of the fake and the kinds they hold
KIND_OF_LIST = {
    "subscription_items": "subscription item",
    "roles": "role",
    "permissions": "permission",
    "invitations": "organization invitation",
    "domains": "organization domain",
    "waitlist_entries": "waitlist entry",
}


def seed(fake: FakeClerk, items: int = 520, entries: int = 3) -> dict[str, list[str]]:
    """Two users, two organizations and some of every list; the ids of each list."""
    for u in range(2):
        fake.add_user(user_id=f"user_k{u}", created_at=10 + u, updated_at=10 + u)
    for o in range(2):
        fake.add_org(org_id=f"org_k{o}", created_at=10 + o, updated_at=10)
    made: dict[str, list[str]] = {name: [] for name in LISTS}

    def add(name: str, obj: dict[str, Any]) -> None:
        made[name].append(fake.add_object(name, obj)["id"])

    # user_k0 is on pro; user_k1 upgraded (an ended free item, an active team one);
    # org_k0 pays for itself; the rest are other users' items (paging depth)
    add("subscription_items", clerk_subscription_item(user_id="user_k0", created_at=50))
    add(
        "subscription_items",
        clerk_subscription_item(
            user_id="user_k1", status="ended", plan="free", amount=0, created_at=51
        ),
    )
    add(
        "subscription_items", clerk_subscription_item(user_id="user_k1", plan="team", created_at=52)
    )
    add("subscription_items", clerk_subscription_item(org_id="org_k0", plan="org", created_at=53))
    for i in range(items - 4):
        add("subscription_items", clerk_subscription_item(user_id=f"user_x{i}", created_at=100 + i))
    for i in range(3):
        add("permissions", clerk_permission(key=f"org:p{i}:manage", created_at=10 + i))
    add("roles", clerk_role(key="org:editor", created_at=10))
    add("roles", clerk_role(key="org:viewer", permissions=[], created_at=11))
    add("roles", clerk_role(key="org:billing", permissions=[], created_at=12))
    for i in range(3):
        add("invitations", clerk_invitation(org_id=f"org_k{i % 2}", email=f"In{i}@X.com"))
    for i in range(3):
        add("domains", clerk_domain(org_id=f"org_k{i % 2}", name=f"k{i}.example"))
    for i in range(entries):
        add("waitlist_entries", clerk_waitlist_entry(email=f"Wait{i}@X.com", created_at=10 + i))
    return made


def held(store: Store) -> dict[str, list[str]]:
    """The Clerk ids MongoDB holds, by kind."""
    return {
        kind.plural: sorted(str(d[store.key(kind)]) for d in store.collection(kind).find())
        for kind in KINDS
        if store.stores(kind) and kind.listing
    }


def requests(fake: FakeClerk) -> dict[str, int]:
    return {name: fake.counts[f"GET /{path}"] for name, path in LISTS.items()}


def test_every_kind_is_backfilled_in_the_fewest_pages_then_a_rerun_writes_nothing(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    made = seed(fake_clerk, items=520, entries=501)
    fake_clerk.counts.clear()
    result = cli("reconcile", "--json", *FAST)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    for name, kind_name in KIND_OF_LIST.items():
        part = summary[BY_NAME[kind_name].plural]
        total = len(made[name])
        assert (part["clerk"], part["created"], part["mongo"], part["orphaned"]) == (
            total,
            total,
            total,
            0,
        ), name
    # 500 a page, stopping at total_count: 520 items and 501 entries are two pages each
    assert requests(fake_clerk) == {
        "subscription_items": 2,
        "roles": 1,
        "permissions": 1,
        "invitations": 1,
        "domains": 1,
        "waitlist_entries": 2,
    }
    users = {d["clerkId"]: d for d in store.users.find({}, {"_id": 0})}
    assert (users["user_k0"]["plan"], users["user_k0"]["planStatus"]) == ("pro", "active")
    assert (users["user_k1"]["plan"], users["user_k1"]["planStatus"]) == ("team", "active")
    org = store.collection(BY_NAME["organization"]).find_one({"clerkId": "org_k0"})
    assert (org["plan"], org["planStatus"]) == ("org", "active")
    invitation = store.collection(BY_NAME["organization invitation"]).find_one(
        {"email": "in1@x.com"}
    )
    assert invitation["organizationId"] == "org_k1" and invitation["status"] == "pending"
    assert not any("accept-invitation" in str(v) for v in invitation.values())
    role = store.collection(BY_NAME["role"]).find_one({"key": "org:editor"})
    assert role["permissions"] == ["org:posts:create"]

    fake_clerk.counts.clear()
    again = json.loads(cli("reconcile", "--json", *FAST).stdout)
    for name, kind_name in KIND_OF_LIST.items():
        part = again[BY_NAME[kind_name].plural]
        assert (part["created"], part["updated"]) == (0, 0), name
        assert part["unchanged"] == len(made[name])
    assert requests(fake_clerk)["subscription_items"] == 2


def test_orphans_of_every_kind_are_confirmed_pruned_and_undone(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    made = seed(fake_clerk, items=6)
    assert cli("reconcile", "--json", *FAST).exit_code == 0
    before = held(store)
    # Clerk loses one object of each list; one more of each is only left out of the list
    # (offset paging skipped it: an earlier one was deleted mid-run): Clerk still has it.
    lost = {name: ids[0] for name, ids in made.items()}
    lost["subscription_items"] = made["subscription_items"][2]  # user_k1's active team item
    for name, object_id in lost.items():
        fake_clerk.remove_object(name, object_id)
    fake_clerk.skipped_by_paging = {ids[-1] for ids in made.values()}
    fake_clerk.counts.clear()

    summary = json.loads(cli("reconcile", "--json", *FAST).stdout)
    for name, kind_name in KIND_OF_LIST.items():
        assert summary[BY_NAME[kind_name].plural]["orphans"] == [lost[name]], name
    # each confirmed in Clerk the way its Listing says, never by a walk of every object
    assert fake_clerk.counts["GET /waitlist_entries"] == 1 + 2  # the list, one query per id
    assert fake_clerk.counts["GET /organization_roles/{id}"] == 2
    assert fake_clerk.counts["GET /users/{id}/billing/subscription"] >= 1

    pruned = cli("reconcile", "--prune", "--yes", "--json", *FAST)
    assert pruned.exit_code == 0, pruned.stderr + pruned.stdout
    report = json.loads(pruned.stdout)
    for kind_name in KIND_OF_LIST.values():
        assert report[BY_NAME[kind_name].plural]["pruned"] == 1, kind_name
    user = store.users.find_one({"clerkId": "user_k1"})
    assert (user["plan"], user["planStatus"]) == ("free", "ended")  # its active item went

    undone = cli("reconcile", "--undo-prune", report["prune_run"], "--json")
    assert undone.exit_code == 0, undone.stderr
    assert held(store) == before
    user = store.users.find_one({"clerkId": "user_k1"})
    assert (user["plan"], user["planStatus"]) == ("team", "active")


@pytest.mark.parametrize("status", [403, 404])
def test_billing_off_is_a_note_and_the_rest_still_syncs(
    cli, store: Store, fake_clerk: FakeClerk, status: int
) -> None:
    seed(fake_clerk, items=1)
    fake_clerk.billing_enabled = False
    fake_clerk.billing_off_status = status
    result = cli("reconcile", "--json", *FAST)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert "Clerk Billing is not enabled" in summary["subscriptionItems"]["note"]
    assert summary["roles"]["created"] == 3 and summary["created"] == 2
    assert "subscriptionItems" not in store.db.list_collection_names()
    human = cli("reconcile", *FAST)
    assert human.exit_code == 0 and "Clerk Billing is not enabled" in human.stderr


def test_without_organizations_the_organization_kinds_are_notes(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    seed(fake_clerk, items=1)
    fake_clerk.orgs_enabled = False
    result = cli("reconcile", "--json", *FAST)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    for plural in ("roles", "permissions", "organizationInvitations", "organizationDomains"):
        assert "organizations are not enabled" in summary[plural]["note"], plural
    assert summary["waitlistEntries"]["created"] == 3
