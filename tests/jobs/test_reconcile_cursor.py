"""Users by cursor (starting_after); the fake's Clerk answers to offsets, cursors and orgs."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from clerksync.clerk.answers import OrganizationsDisabled
from clerksync.clerk.gateway import ClerkGateway
from clerksync.store.database import Store
from clerksync.store.lookups import find_user
from clerksync.store.users import UserHooks
from tests.support.fakeclerk import SECRET_KEY, FakeClerk

FAST = ("--rate", "1000")


def get(fake: FakeClerk, path: str, **params: object) -> httpx.Response:
    return httpx.get(
        fake.url + path, params=params, headers={"authorization": f"Bearer {SECRET_KEY}"}
    )


def seed(fake: FakeClerk, n: int) -> None:
    for i in range(n):
        fake.add_user(user_id=f"user_c{i:05d}", email=f"c{i}@x.com", created_at=1000 + i)


def test_reconcile_pages_by_cursor_past_the_depth_where_offsets_time_out(
    cli, store: Store, fake_clerk: FakeClerk, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(fake_clerk, 1600)
    made: list[str] = []  # the ids whose documents the reader thread made ahead
    real = UserHooks.prepare

    def spy(self: UserHooks, users: Any, now: Any) -> dict[str, dict[str, Any]]:
        docs = real(self, users, now)
        made.extend(docs)
        return docs

    monkeypatch.setattr(UserHooks, "prepare", spy)
    fake_clerk.user_offset_limit = 500  # any deeper offset answers 504, as Clerk's times out
    assert get(fake_clerk, "/users", offset=1000, limit=500).status_code == 504
    fake_clerk.counts.clear()

    summary = json.loads(cli("reconcile", "--json", *FAST).stdout)
    assert summary["clerk_users"] == 1600 and summary["created"] == 1600
    assert fake_clerk.counts["GET /users"] == 4  # 500 + 500 + 500 + 100: the minimum
    assert fake_clerk.deep_offset_refusals == 1  # only the probe above
    assert store.count() == 1600
    # Pages after two all-new ones have their documents made in the reader's thread: the
    # same documents, write-back due, as the first page's.
    # (pages 3 and 4: made while pages 2 and 3 were written, and inserted as made)
    assert made == [f"user_c{i:05d}" for i in range(1000, 1600)]
    first, prepared = (find_user(store, f"user_c{i:05d}") for i in (0, 1200))
    assert shape(first) == shape(prepared)
    assert prepared["email"] == "c1200@x.com" and prepared["clerksync"]["seq"] == 1


def shape(doc: dict[str, object], prefix: str = "") -> set[str]:
    """A document's dotted key paths."""
    keys = set()
    for key, value in doc.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= shape(value, f"{prefix}{key}.")
    return keys


def test_a_user_who_signs_up_mid_walk_is_seen_and_a_deleted_cursor_is_stepped_over(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    seed(fake_clerk, 1000)

    def change_clerk(start: int) -> None:
        if start == 0:  # after page 1: its last two users go, a newcomer signs up
            for gone in ("user_c00499", "user_c00498"):
                del fake_clerk.users[gone]
            fake_clerk.users["user_late"] = {
                **fake_clerk.users["user_c00000"],
                "id": "user_late",
                "created_at": 10**12,
                "email_addresses": [],
                "primary_email_address_id": None,
            }
            fake_clerk.version += 1

    fake_clerk.after_page = change_clerk
    fake_clerk.counts.clear()
    summary = json.loads(cli("reconcile", "--json", *FAST).stdout)
    fake_clerk.after_page = None
    assert summary["clerk_users"] == 1001  # 500, then 500 + the newcomer: nobody twice
    assert summary["created"] == 1001
    # page 1, two cursors Clerk no longer knows (422), the page after user_c00497, the rest
    assert fake_clerk.counts["GET /users"] == 1 + 2 + 1 + 1
    assert find_user(store, "user_late")["clerkId"] == "user_late"


def test_starting_after_needs_created_at_order_and_no_offset_as_on_clerk(
    fake_clerk: FakeClerk,
) -> None:
    seed(fake_clerk, 5)
    ok = get(fake_clerk, "/users", starting_after="user_c00001", order_by="+created_at")
    assert [u["id"] for u in ok.json()] == ["user_c00002", "user_c00003", "user_c00004"]
    newest_first = get(fake_clerk, "/users", starting_after="user_c00003")  # -created_at
    assert [u["id"] for u in newest_first.json()] == ["user_c00002", "user_c00001", "user_c00000"]
    for params in (
        {"starting_after": "user_c00001", "offset": 2},
        {"starting_after": "user_c00001", "order_by": "-updated_at"},
        {"starting_after": "user_nobody"},
    ):
        refused = get(fake_clerk, "/users", **params)
        assert refused.status_code == 422, params
        assert refused.json()["errors"][0]["code"]


def test_gateway_pages_organizations_and_memberships_instance_wide(
    fake_clerk: FakeClerk,
) -> None:
    for i in range(7):
        org = fake_clerk.add_org(org_id=f"org_g{i}", name=f"G{i}", created_at=100 + i)
        for j in range(3):
            fake_clerk.add_membership(org["id"], f"user_m{j}", created_at=1000 + 10 * i + j)
    gateway = ClerkGateway(SECRET_KEY, api_url=fake_clerk.url)
    orgs, total = gateway.list_at("/organizations", offset=5, limit=5)
    assert total == 7 and [o["id"] for o in orgs] == ["org_g5", "org_g6"]
    members, total = gateway.list_at("/organization_memberships", offset=0, limit=500)
    assert total == 21 and members[0]["organization"]["id"] == "org_g0"
    assert members[-1]["public_user_data"]["user_id"] == "user_m2"
    assert {
        o["id"]
        for o in gateway.find_ids("/organizations", "organization_id", ["org_g1", "org_nope"])
    } == {"org_g1"}
    assert [
        m["public_user_data"]["user_id"]
        for m in gateway.find_under("/organizations/org_g2/memberships", "user_id", ["user_m1"])
    ] == ["user_m1"]
    assert gateway.find_under("/organizations/org_gone/memberships", "user_id", ["user_m1"]) == []
    assert gateway.count("/organizations") == 7
    assert get(fake_clerk, "/organizations", limit=501).status_code == 422
    assert get(fake_clerk, "/organization_memberships", limit=0).status_code == 422


def test_an_instance_without_organizations_answers_as_clerk_does(fake_clerk: FakeClerk) -> None:
    fake_clerk.orgs_enabled = False
    answer = get(fake_clerk, "/organizations")
    assert answer.status_code == 403
    assert answer.json()["errors"][0]["code"] == "organization_not_enabled_in_instance"
    gateway = ClerkGateway(SECRET_KEY, api_url=fake_clerk.url)
    with pytest.raises(OrganizationsDisabled):
        gateway.list_at("/organization_memberships")
    with pytest.raises(OrganizationsDisabled):
        gateway.count("/organizations")
