"""Organizations and memberships through the receiver: svix-signed deliveries over HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clerksync.devtools.payloads import clerk_user, deleted_user, event
from clerksync.kinds.membership import MEMBERSHIP
from clerksync.kinds.organization import ORGANIZATION
from clerksync.store.database import Store
from tests.conftest import WEBHOOK_SECRET
from tests.support.examples import EXAMPLES_FILE
from tests.support.fakeclerk import clerk_membership, clerk_organization
from tests.support.receiver import RunningReceiver, post

EXAMPLES = json.loads(EXAMPLES_FILE.read_text())["events"]


def org_event(kind: str, org_id: str, version: int, **kw: Any) -> dict[str, Any]:
    org = clerk_organization(org_id=org_id, created_at=1000, updated_at=1000 * version, **kw)
    return event(f"organization.{kind}", org)


def org_deleted(org_id: str) -> dict[str, Any]:
    data = {"deleted": True, "id": org_id, "object": "organization", "slug": "gone"}
    return event("organization.deleted", data)


def member_event(
    kind: str, mem_id: str, org_id: str, user_id: str, version: int, role: str = "org:member"
) -> dict[str, Any]:
    org = clerk_organization(org_id=org_id, created_at=1000, updated_at=1000)
    member = clerk_membership(
        org=org,
        user_id=user_id,
        role=role,
        membership_id=mem_id,
        created_at=1000,
        updated_at=1000 * version,
    )
    return event(f"organizationMembership.{kind}", member)


def outcome(receiver: RunningReceiver, body: dict[str, Any], **kw: Any) -> str:
    response = post(receiver.url, WEBHOOK_SECRET, body, **kw)
    assert response.status_code == 200, response.text
    return str(response.json()["outcome"])


def test_every_documented_example_is_acknowledged(receiver: RunningReceiver, store: Store) -> None:
    for name, body in EXAMPLES.items():
        response = post(receiver.url, WEBHOOK_SECRET, body)
        assert response.status_code == 200, (name, response.text)


def test_clerks_org_examples_are_stored_right_in_lifecycle_order(
    receiver: RunningReceiver, store: Store
) -> None:
    orgs, members = store.collection(ORGANIZATION), store.collection(MEMBERSHIP)
    org_id = EXAMPLES["organization.created"]["data"]["id"]
    assert outcome(receiver, EXAMPLES["organization.created"]) == "applied"
    doc = orgs.find_one({"clerkId": org_id})
    assert (doc["name"], doc["slug"], doc["imageUrl"]) == (
        "Acme Corp",
        "acme-corp",
        "https://img.clerk.com/xxxxxx",
    )
    assert outcome(receiver, EXAMPLES["organization.updated"]) == "applied"
    doc = orgs.find_one({"clerkId": org_id})
    assert (doc["name"], doc["slug"]) == ("Acme Corp Updated", "acme-corp-updated")
    assert doc["clerksync"]["updatedAt"] == 1716883500000 and "createdAt" in doc

    mem = EXAMPLES["organizationMembership.created"]["data"]
    assert outcome(receiver, EXAMPLES["organizationMembership.created"]) == "applied"
    assert outcome(receiver, EXAMPLES["organizationMembership.updated"]) == "applied"
    stored = members.find_one({"clerkId": mem["id"]})
    assert (stored["organizationId"], stored["userId"], stored["role"]) == (
        org_id,
        mem["public_user_data"]["user_id"],
        "org:admin",
    )
    # Clerk's documented delete is older than the update before it: deleted all the same.
    assert outcome(receiver, EXAMPLES["organizationMembership.deleted"]) == "applied"
    assert members.count_documents({}) == 0
    assert outcome(receiver, EXAMPLES["organizationMembership.updated"]) == "stale"
    assert members.count_documents({}) == 0
    assert outcome(receiver, EXAMPLES["organization.deleted"]) == "applied"
    assert orgs.count_documents({}) == 0
    assert outcome(receiver, EXAMPLES["organization.updated"]) == "stale"  # no resurrection
    assert orgs.count_documents({}) == 0


def test_duplicates_and_out_of_order_updates(receiver: RunningReceiver, store: Store) -> None:
    orgs, members = store.collection(ORGANIZATION), store.collection(MEMBERSHIP)
    assert outcome(receiver, org_event("created", "org_o1", 1, name="One")) == "applied"
    newer = org_event("updated", "org_o1", 3, name="Three")
    assert outcome(receiver, newer, msg_id="msg_same") == "applied"
    assert outcome(receiver, newer, msg_id="msg_same") == "duplicate"  # Svix's retry
    assert outcome(receiver, org_event("updated", "org_o1", 2, name="Two")) == "stale"
    assert orgs.find_one({"clerkId": "org_o1"})["name"] == "Three"

    admin = member_event("updated", "orgmem_m1", "org_o1", "user_u1", 3, role="org:admin")
    assert outcome(receiver, admin) == "applied"
    late = member_event("created", "orgmem_m1", "org_o1", "user_u1", 1)
    assert outcome(receiver, late) == "stale"
    assert members.find_one({"clerkId": "orgmem_m1"})["role"] == "org:admin"
    assert members.count_documents({}) == 1


def test_a_membership_before_its_org_and_user_is_stored(
    receiver: RunningReceiver, store: Store
) -> None:
    body = member_event("created", "orgmem_early", "org_later", "user_later", 1)
    assert outcome(receiver, body) == "applied"
    assert store.collection(MEMBERSHIP).count_documents({"organizationId": "org_later"}) == 1
    assert outcome(receiver, org_event("created", "org_later", 1)) == "applied"
    assert outcome(receiver, event("user.created", clerk_user(user_id="user_later"))) == "applied"
    assert (
        store.collection(MEMBERSHIP).find_one({"organizationId": "org_later"})["userId"]
        == "user_later"
    )


def test_organization_deleted_cascades_and_nothing_comes_back(
    receiver: RunningReceiver, store: Store
) -> None:
    members = store.collection(MEMBERSHIP)
    outcome(receiver, org_event("created", "org_c", 1))
    for i in range(3):
        outcome(receiver, member_event("created", f"orgmem_c{i}", "org_c", f"user_c{i}", 1))
    outcome(receiver, member_event("created", "orgmem_other", "org_other", "user_c0", 1))
    assert outcome(receiver, org_deleted("org_c")) == "applied"
    assert members.count_documents({"organizationId": "org_c"}) == 0
    assert members.count_documents({}) == 1  # another org's membership stays
    assert outcome(receiver, org_deleted("org_c")) == "duplicate"
    # late deliveries for the deleted org and its memberships
    assert outcome(receiver, member_event("updated", "orgmem_c1", "org_c", "user_c1", 5)) == "stale"
    assert (
        outcome(receiver, member_event("created", "orgmem_new", "org_c", "user_c9", 5)) == "stale"
    )
    assert outcome(receiver, org_event("updated", "org_c", 9)) == "stale"
    assert store.collection(ORGANIZATION).count_documents({}) == 0
    assert members.count_documents({}) == 1


def test_user_deleted_removes_the_users_memberships(
    receiver: RunningReceiver, store: Store
) -> None:
    members = store.collection(MEMBERSHIP)
    outcome(receiver, event("user.created", clerk_user(user_id="user_gone")))
    for org in ("org_a", "org_b"):
        outcome(receiver, member_event("created", f"orgmem_{org}", org, "user_gone", 1))
    outcome(receiver, member_event("created", "orgmem_keep", "org_a", "user_stays", 1))
    assert outcome(receiver, event("user.deleted", deleted_user("user_gone"))) == "applied"
    assert members.count_documents({"userId": "user_gone"}) == 0
    assert members.count_documents({}) == 1
    late = member_event("updated", "orgmem_org_a", "org_a", "user_gone", 7)
    assert outcome(receiver, late) == "stale"
    assert members.count_documents({"userId": "user_gone"}) == 0


@pytest.mark.parametrize(
    "body",
    [
        event("organization.created", {"id": {"$ne": ""}, "name": "x", "updated_at": 1}),
        event("organization.updated", {"id": "org_x", "name": "x"}),
        event("organization.deleted", {"id": "user_x", "deleted": True}),
        event("organizationMembership.created", {"id": "orgmem_x", "role": "org:member"}),
        event("organizationMembership.deleted", "orgmem_x"),
    ],
)
def test_a_signed_but_malformed_org_body_is_400_and_writes_nothing(
    receiver: RunningReceiver, store: Store, body: dict[str, Any]
) -> None:
    response = post(receiver.url, WEBHOOK_SECRET, body)
    assert response.status_code == 400
    assert "payload" in response.json()["error"]
    assert store.collection(ORGANIZATION).count_documents({}) == 0
    assert store.collection(MEMBERSHIP).count_documents({}) == 0


def test_an_app_index_refusing_an_org_is_a_503_never_a_stale_2xx(
    receiver: RunningReceiver, store: Store
) -> None:
    store.collection(ORGANIZATION).create_index("name", unique=True, name="app_unique_name")
    assert outcome(receiver, org_event("created", "org_first", 1, name="Same")) == "applied"
    response = post(
        receiver.url, WEBHOOK_SECRET, org_event("created", "org_second", 1, name="Same")
    )
    assert response.status_code == 503  # Svix retries once the app's index is fixed
    assert response.json()["outcome"] == "failed"
    assert store.collection(ORGANIZATION).count_documents({"clerkId": "org_second"}) == 0
