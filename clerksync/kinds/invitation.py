"""A Clerk organization invitation: ``organizationInvitation.created|accepted|revoked``,
and the instance-wide ``GET /organization_invitations``.

Shapes (Clerk's documented examples, and the Backend API's
``OrganizationInvitationWithPublicOrganizationData``): ``id`` (``orginv_…``),
``email_address``, ``role``, ``organization_id``, ``status`` (``pending``, ``accepted``,
``revoked``, ``expired``), ``created_at``, ``updated_at``, and ``url``, whose token accepts
the invitation: it is never stored, and the delivery log keeps the body without it
(``Kind.secret``). An invitation belongs to its organization (its delete removes them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from clerksync.kinds.base import (
    Kind,
    Listing,
    clerk_id,
    deleted_parser,
    email,
    json_object,
    millis,
    text,
    updated_at,
)
from clerksync.kinds.organization import parse_org_id

INVITATION_ID = re.compile(r"^orginv_[A-Za-z0-9_]{1,100}$")


@dataclass(frozen=True)
class ClerkInvitation:
    """The part of an organization invitation clerksync keeps, already validated (never its
    ``url``)."""

    id: str
    organization_id: str
    email: str
    role: str
    status: str | None
    created_at: int | None
    updated_at: int


def parse_invitation(data: Any) -> ClerkInvitation:
    """Validate an invitation (any ``organizationInvitation.*`` data, or a Backend API one)."""
    data = json_object(data, "the invitation")
    stamp = updated_at(data)
    role = text(data, "role", required=True)
    assert role is not None
    return ClerkInvitation(
        id=clerk_id(data.get("id"), INVITATION_ID, "id", "organization invitation", "orginv_"),
        organization_id=parse_org_id(data.get("organization_id"), "organization_id"),
        email=email(data),
        role=role,
        status=text(data, "status"),
        created_at=millis(data, "created_at", required=False),
        updated_at=stamp,
    )


INVITATION = Kind(
    name="organization invitation",
    plural="organizationInvitations",
    id_re=INVITATION_ID,
    events={
        "organizationInvitation.created": "upsert",
        "organizationInvitation.accepted": "upsert",
        "organizationInvitation.revoked": "upsert",
    },
    parse=parse_invitation,
    parse_deleted=deleted_parser(INVITATION_ID, "organization invitation", "orginv_"),
    fields=("organization_id", "email", "role", "status"),
    optional=("role", "status"),
    presets={
        "nextjs": {
            "collection": "organizationInvitations",
            "clerk_id": "clerkId",
            "organization_id": "organizationId",
            "email": "email",
            "role": "role",
            "status": "status",
            "created_at": "createdAt",
            "updated_at": "updatedAt",
        },
        "fastapi": {
            "collection": "organization_invitations",
            "clerk_id": "clerk_invitation_id",
            "organization_id": "clerk_org_id",
            "email": "email",
            "role": "role",
            "status": "status",
            "created_at": None,
            "updated_at": None,
        },
    },
    parents={"organization": "organization_id"},
    indexed=("organization_id", "email"),  # cascades; an app's "pending invitations of"
    secret=("url",),
    listing=Listing(
        "/organization_invitations",
        one=("/organizations/{organization_id}/invitations/{id}",),
    ),
)
