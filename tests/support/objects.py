"""One Clerk object of every kind the registry has, as a webhook event, for the tests that run
over the registry (``tests/store/test_registry_property.py``): its state at a version (its
``updated_at`` is ``1000 * version``), its delete event when Clerk has one, and the parents
it names. A kind added to the registry without a builder here fails those tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clerksync.devtools.payloads import clerk_user, deleted_user, event
from tests.support.fakeclerk import clerk_membership, clerk_organization
from tests.support.fakelists import (
    clerk_domain,
    clerk_invitation,
    clerk_permission,
    clerk_role,
    clerk_subscription_item,
    clerk_waitlist_entry,
    payer,
)

Body = dict[str, Any]


@dataclass(frozen=True)
class Builder:
    """How to make one kind's events: ``count`` objects; ``state(run, index, version)``;
    ``delete(run, index)`` (None: Clerk sends no delete of the kind); ``parents(index)``:
    (parent kind, its index) the object names."""

    count: int
    state: Callable[[str, int, int], Body]
    delete: Callable[[str, int], Body] | None = None
    parents: Callable[[int], list[tuple[str, int]]] = lambda index: []


def ids(run: str, index: int) -> dict[str, str]:
    return {"user": f"user_{run}u{index}", "org": f"org_{run}o{index}"}


def _verb(version: int) -> str:
    return "created" if version == 1 else "updated"


def _user(run: str, i: int, v: int) -> Body:
    data = clerk_user(user_id=ids(run, i)["user"], first_name=f"v{v}", updated_at=1000 * v)
    return event(f"user.{_verb(v)}", data)


def _org(run: str, i: int, v: int) -> Body:
    org = clerk_organization(org_id=ids(run, i)["org"], name=f"v{v}", updated_at=1000 * v)
    return event(f"organization.{_verb(v)}", org)


MEMBERS = [(0, 0), (0, 1), (1, 0), (1, 1)]  # (org, user)


def _member(run: str, i: int, v: int | None) -> Body:
    o, u = MEMBERS[i]
    member = clerk_membership(
        org=clerk_organization(org_id=ids(run, o)["org"], updated_at=1000),
        user_id=ids(run, u)["user"],
        membership_id=f"orgmem_{run}m{i}",
        role=f"org:v{v or 0}",
        created_at=1000,
        updated_at=1000 * (v or 1),  # Clerk's deletes can carry an older updated_at
    )
    name = {None: "deleted", 1: "created"}.get(v, "updated")
    return event(f"organizationMembership.{name}", member)


def _item_data(run: str, i: int, v: int) -> Body:
    """Item 0 is user 0's, item 1 organization 1's; its status moves on with its version."""
    status = ("active", "past_due", "canceled", "ended")[(v - 1) % 4]
    payer_of = {"user_id": ids(run, 0)["user"]} if i == 0 else {"org_id": ids(run, 1)["org"]}
    return clerk_subscription_item(
        item_id=f"csub_item_{run}s{i}",
        status=status,
        plan=f"plan-v{v}",
        created_at=1000,
        updated_at=1000 * v,
        webhook=True,
        subscription_id=f"csub_{run}s{i}",
        **payer_of,
    )


def _item(run: str, i: int, v: int) -> Body:
    return event(
        f"subscriptionItem.{('active', 'pastDue', 'canceled', 'ended')[(v - 1) % 4]}",
        _item_data(run, i, v),
    )


def subscription(run: str, i: int, v: int) -> Body:
    """``subscription.updated`` carrying item ``i`` at version ``v`` (its payer on the
    subscription, none on the item, as Clerk sends them)."""
    item = _item_data(run, i, v)
    owner = item.pop("payer")
    item["subscription_id"] = None
    data = {
        "object": "commerce_subscription",
        "id": f"csub_{run}s{i}",
        "status": item["status"],
        "payer": owner,
        "items": [item],
        "created_at": 1000,
        "updated_at": 1000 * v,
    }
    return event("subscription.updated", data)


def _permission(run: str, i: int, v: int) -> Body:
    data = clerk_permission(
        perm_id=f"perm_{run}p{i}", name=f"v{v}", created_at=1000, updated_at=1000 * v
    )
    return event(f"permission.{_verb(v)}", data)


def _role(run: str, i: int, v: int) -> Body:
    data = clerk_role(role_id=f"role_{run}r{i}", name=f"v{v}", created_at=1000, updated_at=1000 * v)
    return event(f"role.{_verb(v)}", data)


def _invitation(run: str, i: int, v: int) -> Body:
    data = clerk_invitation(
        invitation_id=f"orginv_{run}i{i}",
        org_id=ids(run, i % 2)["org"],
        role=f"org:v{v}",
        created_at=1000,
        updated_at=1000 * v,
    )
    return event(f"organizationInvitation.{'created' if v == 1 else 'accepted'}", data)


def _domain(run: str, i: int, v: int) -> Body:
    data = clerk_domain(
        domain_id=f"orgdmn_{run}d{i}",
        org_id=ids(run, i)["org"],
        name=f"v{v}.example.com",
        created_at=1000,
        updated_at=1000 * v,
    )
    return event(f"organizationDomain.{_verb(v)}", data)


def _entry(run: str, i: int, v: int) -> Body:
    data = clerk_waitlist_entry(
        entry_id=f"wle_{run}w{i}", status=f"v{v}", created_at=1000, updated_at=1000 * v
    )
    return event(f"waitlistEntry.{_verb(v)}", data)


def _attempt(run: str, i: int, v: int) -> Body:
    data = {
        "id": f"pa_{run}a{i}",
        "status": f"v{v}",
        "payer": payer(ids(run, 0)["user"]),
        "totals": {"grand_total": {"amount": 100 * v, "currency": "USD"}},
        "payment_source": {"card_type": "visa", "last4": "4242"},
        "created_at": 1000,
        "updated_at": 1000 * v,
    }
    return event(f"paymentAttempt.{_verb(v)}", data)


def gone(event_type: str, object_id: str) -> Body:
    """A ``*.deleted`` event that names the object alone (``{id, object, deleted}``)."""
    return event(event_type, {"id": object_id, "object": event_type.split(".")[0], "deleted": True})


BUILDERS: dict[str, Builder] = {
    "user": Builder(
        2, _user, lambda run, i: event("user.deleted", deleted_user(ids(run, i)["user"]))
    ),
    "organization": Builder(
        2,
        _org,
        lambda run, i: event(
            "organization.deleted",
            {"deleted": True, "id": ids(run, i)["org"], "object": "organization", "slug": None},
        ),
    ),
    "membership": Builder(
        len(MEMBERS),
        _member,
        lambda run, i: _member(run, i, None),
        lambda i: [("organization", MEMBERS[i][0]), ("user", MEMBERS[i][1])],
    ),
    "subscription item": Builder(
        2, _item, parents=lambda i: [("user", 0)] if i == 0 else [("organization", 1)]
    ),
    "permission": Builder(
        1, _permission, lambda run, i: gone("permission.deleted", f"perm_{run}p{i}")
    ),
    "role": Builder(1, _role, lambda run, i: gone("role.deleted", f"role_{run}r{i}")),
    "organization invitation": Builder(2, _invitation, parents=lambda i: [("organization", i % 2)]),
    "organization domain": Builder(
        1,
        _domain,
        lambda run, i: gone("organizationDomain.deleted", f"orgdmn_{run}d{i}"),
        lambda i: [("organization", i)],
    ),
    "waitlist entry": Builder(1, _entry),
    "payment attempt": Builder(1, _attempt, parents=lambda i: [("user", 0)]),
}


def object_id(kind: str, run: str, index: int) -> str:
    """The Clerk id of a builder's object."""
    body = BUILDERS[kind].state(run, index, 1)
    return str(body["data"]["id"])
