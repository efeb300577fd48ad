"""A Clerk organization membership: ``organizationMembership.created|updated|deleted``, and
the instance-wide ``GET /organization_memberships``.

Every membership event (deleted too) embeds the whole ``organization`` and the member as
``public_user_data.user_id``. A membership belongs to its organization and its user: it is
removed when either is deleted, refused when either's tombstone names it, and stored even
before either arrives (deliveries come in best-effort order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from clerksync.errors import InvalidEvent
from clerksync.kinds.base import Deleted, Kind, Listing, clerk_id, json_object, millis, updated_at
from clerksync.kinds.organization import parse_org_id
from clerksync.kinds.user import parse_clerk_id

MEMBERSHIP_ID = re.compile(r"^orgmem_[A-Za-z0-9_]{1,100}$")
#: a role is a key (``org:admin``), as an id is: never cut (a cut key is another role)
MAX_ROLE = 256


@dataclass(frozen=True)
class ClerkMembership:
    """One user's membership of one organization, with its role, already validated."""

    id: str
    organization_id: str
    user_id: str
    role: str
    created_at: int | None
    updated_at: int


def parse_membership_id(value: Any) -> str:
    """A membership id (``orgmem_…``), or InvalidEvent."""
    return clerk_id(value, MEMBERSHIP_ID, "id", "membership", "orgmem_")


def parse_membership(data: Any) -> ClerkMembership:
    """Validate a membership (any ``organizationMembership.*`` data, or a Backend API one)."""
    data = json_object(data, "the membership")
    organization = json_object(data.get("organization"), "field 'organization'")
    member = json_object(data.get("public_user_data"), "field 'public_user_data'")
    role = data.get("role")
    if not isinstance(role, str) or not role or len(role) > MAX_ROLE:
        raise InvalidEvent("field 'role' must be a non-empty string such as org:admin")
    try:
        user_id = parse_clerk_id(member.get("user_id"))
    except InvalidEvent:
        raise InvalidEvent("field 'public_user_data.user_id' must be a Clerk user id") from None
    stamp = updated_at(data)
    return ClerkMembership(
        id=parse_membership_id(data.get("id")),
        organization_id=parse_org_id(organization.get("id"), "organization.id"),
        user_id=user_id,
        role=role,
        created_at=millis(data, "created_at", required=False),
        updated_at=stamp,
    )


def parse_deleted_membership(data: Any) -> Deleted:
    """``organizationMembership.deleted`` sends the whole membership, validated as any."""
    member = parse_membership(data)
    return Deleted(member.id, member.user_id)


MEMBERSHIP = Kind(
    name="membership",
    plural="memberships",
    id_re=MEMBERSHIP_ID,
    events={
        "organizationMembership.created": "upsert",
        "organizationMembership.updated": "upsert",
        "organizationMembership.deleted": "delete",
    },
    parse=parse_membership,
    parse_deleted=parse_deleted_membership,
    fields=("organization_id", "user_id", "role"),
    presets={
        "nextjs": {
            "collection": "memberships",
            "clerk_id": "clerkId",
            "organization_id": "organizationId",
            "user_id": "userId",
            "role": "role",
            "created_at": "createdAt",
            "updated_at": "updatedAt",
        },
        "fastapi": {
            "collection": "memberships",
            "clerk_id": "clerk_membership_id",
            "organization_id": "clerk_org_id",
            "user_id": "clerk_user_id",
            "role": "role",
            "created_at": None,
            "updated_at": None,
        },
    },
    parents={"organization": "organization_id", "user": "user_id"},
    # A pruned user takes its memberships along (one user among many is no mass prune);
    # an organization Clerk no longer lists leaves memberships Clerk no longer lists: orphans.
    pruned_with=("user",),
    indexed=("organization_id", "user_id"),  # cascades and `orgs show`
    user_of=lambda m: m.user_id,
    listing=Listing(
        "/organization_memberships",
        per_parent="/organizations/{parent}/memberships",
        parent_field="organization_id",
        member_param="user_id",
        member_field="user_id",
    ),
)
