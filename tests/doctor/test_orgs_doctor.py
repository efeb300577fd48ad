"""`clerksync doctor` compares Clerk's and MongoDB's organization counts."""

from __future__ import annotations

import json

from clerksync.kinds.organization import ORGANIZATION, parse_organization
from clerksync.store.database import Store
from tests.support.fakeclerk import FakeClerk
from tests.support.writes import upsert_outcome


def org_check(cli) -> dict:
    result = cli("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    return checks["organization counts"]


def test_equal_counts_pass_and_a_gap_warns_with_the_fix(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    for i in range(3):
        org = fake_clerk.add_org(org_id=f"org_d{i}", updated_at=5)
        upsert_outcome(store, ORGANIZATION, parse_organization(org))
    check = org_check(cli)
    assert check["status"] == "pass" and check["detail"] == "Clerk 3, MongoDB 3"
    fake_clerk.add_org(org_id="org_missed")
    check = org_check(cli)
    assert check["status"] == "warn" and check["detail"] == "Clerk 4, MongoDB 3"
    assert "reconcile" in check["hint"]


def test_an_instance_without_organizations_is_a_note(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    fake_clerk.orgs_enabled = False
    check = org_check(cli)
    assert check["status"] == "pass" and "not enabled" in check["detail"]
