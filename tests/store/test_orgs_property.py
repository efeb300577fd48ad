"""Property, over HTTP with signed deliveries: any interleaving of organization, membership and
user events, with duplicates, ends in each object's newest event; deletes are final, and an
organization's or user's delete takes its memberships with it."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clerksync.devtools.payloads import clerk_user, deleted_user, event
from clerksync.kinds.membership import MEMBERSHIP
from clerksync.kinds.organization import ORGANIZATION
from clerksync.store.database import Store
from tests.conftest import WEBHOOK_SECRET
from tests.support.fakeclerk import clerk_membership, clerk_organization
from tests.support.receiver import RunningReceiver, post

RUN = itertools.count()
ORGS, USERS = 2, 2
MEMBERS = [(o, u) for o in range(ORGS) for u in range(USERS)]

# (kind, index, version); version None is the delete
delivery = st.one_of(
    st.tuples(st.just("org"), st.integers(0, ORGS - 1), st.one_of(st.none(), st.integers(1, 4))),
    st.tuples(st.just("user"), st.integers(0, USERS - 1), st.one_of(st.none(), st.integers(1, 4))),
    st.tuples(
        st.just("mem"), st.integers(0, len(MEMBERS) - 1), st.one_of(st.none(), st.integers(1, 4))
    ),
)


def body(run: int, kind: str, index: int, version: int | None) -> dict[str, Any]:
    org_id, user_id = f"org_r{run}o{index}", f"user_r{run}u{index}"
    if kind == "user":
        if version is None:
            return event("user.deleted", deleted_user(user_id))
        data = clerk_user(user_id=user_id, first_name=f"v{version}", updated_at=1000 * version)
        return event("user.created" if version == 1 else "user.updated", data)
    if kind == "org":
        if version is None:
            data = {"deleted": True, "id": org_id, "object": "organization", "slug": None}
            return event("organization.deleted", data)
        org = clerk_organization(org_id=org_id, name=f"v{version}", updated_at=1000 * version)
        return event("organization.created" if version == 1 else "organization.updated", org)
    o, u = MEMBERS[index]
    org = clerk_organization(org_id=f"org_r{run}o{o}", updated_at=1000)
    member = clerk_membership(
        org=org,
        user_id=f"user_r{run}u{u}",
        membership_id=f"orgmem_r{run}m{index}",
        role=f"org:v{version or 0}",
        created_at=1000,
        updated_at=1000 * (version or 1),  # Clerk's deletes can carry an older updated_at
    )
    name = {None: "deleted", 1: "created"}.get(version, "updated")
    return event(f"organizationMembership.{name}", member)


def newest(deliveries: list[Any], kind: str, index: int) -> int | None:
    """The version the object must end in; None when it must not exist."""
    mine = [v for k, i, v in deliveries if (k, i) == (kind, index)]
    return None if not mine or None in mine else max(mine)


def deleted(deliveries: list[Any], kind: str, index: int) -> bool:
    return (kind, index, None) in deliveries


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(deliveries=st.lists(delivery, min_size=1, max_size=16))
def test_final_state_is_each_objects_newest_event(
    receiver: RunningReceiver, store: Store, deliveries: list[Any]
) -> None:
    run = next(RUN)
    with httpx.Client(timeout=30) as client:
        for kind, index, version in deliveries:
            response = post(
                receiver.url, WEBHOOK_SECRET, body(run, kind, index, version), client=client
            )
            assert response.status_code == 200, response.text

    for o in range(ORGS):
        doc = store.collection(ORGANIZATION).find_one({"clerkId": f"org_r{run}o{o}"})
        want = newest(deliveries, "org", o)
        assert (doc and doc["name"]) == (f"v{want}" if want else None)
    for u in range(USERS):
        want = newest(deliveries, "user", u)
        found = store.users.find_one({"clerkId": f"user_r{run}u{u}"})
        assert (found and found["firstName"]) == (f"v{want}" if want else None)
    for m, (o, u) in enumerate(MEMBERS):
        doc = store.collection(MEMBERSHIP).find_one({"clerkId": f"orgmem_r{run}m{m}"})
        want = newest(deliveries, "mem", m)
        if deleted(deliveries, "org", o) or deleted(deliveries, "user", u):
            want = None  # the cascade, or refused after it
        assert (doc and doc["role"]) == (f"org:v{want}" if want else None), deliveries
