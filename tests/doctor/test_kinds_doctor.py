"""`clerksync doctor` compares Clerk's and MongoDB's counts of every kind the registry lists,
the new ones included; a feature that is off is a note."""

from __future__ import annotations

import json

from clerksync.kinds.registry import BY_NAME
from clerksync.store.database import Store
from tests.support.fakeclerk import FakeClerk
from tests.support.fakelists import clerk_role, clerk_subscription_item, clerk_waitlist_entry


def checks(cli) -> dict[str, dict]:
    result = cli("doctor", "--json")
    return {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def test_every_listed_kind_is_counted_and_a_gap_warns(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    fake_clerk.add_user(user_id="user_d0")
    fake_clerk.add_object("subscription_items", clerk_subscription_item(user_id="user_d0"))
    fake_clerk.add_object("roles", clerk_role())
    fake_clerk.add_object("waitlist_entries", clerk_waitlist_entry())
    assert cli("reconcile", "--rate", "1000").exit_code == 0
    found = checks(cli)
    for kind in BY_NAME.values():
        if kind.listing is not None and kind.name != "user":
            assert f"{kind.name} counts" in found, kind.name
    assert found["subscription item counts"]["status"] == "pass"
    assert found["subscription item counts"]["detail"] == "Clerk 1, MongoDB 1"
    assert found["permission counts"]["detail"] == "Clerk 0, MongoDB 0"
    fake_clerk.add_object("waitlist_entries", clerk_waitlist_entry(email="late@x.com"))
    entry = checks(cli)["waitlist entry counts"]
    assert entry["status"] == "warn" and entry["detail"] == "Clerk 2, MongoDB 1"
    assert "reconcile" in entry["hint"]


def test_billing_off_is_a_note(cli, store: Store, fake_clerk: FakeClerk) -> None:
    fake_clerk.billing_enabled = False
    check = checks(cli)["subscription item counts"]
    assert check["status"] == "pass" and "Clerk Billing is not enabled" in check["detail"]
