"""A Clerk organization: ``organization.created|updated|deleted``, and the instance-wide
``GET /organizations``.

Shapes (Clerk's documented examples): an organization carries ``id``, ``name``, ``slug``,
``image_url``, ``created_at``, ``updated_at``; ``organization.deleted`` sends only
``{id, object, slug, deleted}``. Deleting one removes its memberships (their kind names it
as a parent).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from clerksync.kinds.base import (
    Deleted,
    Kind,
    Listing,
    clerk_id,
    json_object,
    millis,
    text,
    updated_at,
)

ORG_ID = re.compile(r"^org_[A-Za-z0-9_]{1,100}$")


@dataclass(frozen=True)
class ClerkOrganization:
    """The part of a Clerk organization clerksync keeps, already validated."""

    id: str
    name: str
    slug: str | None
    image_url: str | None
    created_at: int | None
    updated_at: int


def parse_org_id(value: Any, key: str = "id") -> str:
    """An organization id (``org_…``), or InvalidEvent: ids go into filters."""
    return clerk_id(value, ORG_ID, key, "organization", "org_")


def parse_organization(data: Any) -> ClerkOrganization:
    """Validate an organization (``organization.created|updated`` data, or a Backend API one)."""
    data = json_object(data, "the organization")
    stamp = updated_at(data)
    name = text(data, "name", required=True)
    assert name is not None
    return ClerkOrganization(
        id=parse_org_id(data.get("id")),
        name=name,
        slug=text(data, "slug"),
        image_url=text(data, "image_url", whole=True),
        created_at=millis(data, "created_at", required=False),
        updated_at=stamp,
    )


def parse_deleted_organization(data: Any) -> Deleted:
    """``organization.deleted`` data: ``{id, object, slug, deleted}``."""
    data = json_object(data, "field 'data'")
    text(data, "slug")  # checked, as every field the event carries
    return Deleted(parse_org_id(data.get("id")))


ORGANIZATION = Kind(
    name="organization",
    plural="organizations",
    id_re=ORG_ID,
    events={
        "organization.created": "upsert",
        "organization.updated": "upsert",
        "organization.deleted": "delete",
    },
    parse=parse_organization,
    parse_deleted=parse_deleted_organization,
    fields=("name", "slug", "image_url"),
    optional=("image_url",),
    presets={
        "nextjs": {
            "collection": "organizations",
            "clerk_id": "clerkId",
            "name": "name",
            "slug": "slug",
            "image_url": "imageUrl",
            "created_at": "createdAt",
            "updated_at": "updatedAt",
        },
        "fastapi": {
            "collection": "organizations",
            "clerk_id": "clerk_org_id",
            "name": "name",
            "slug": "slug",
            "image_url": "image_url",
            "created_at": None,
            "updated_at": None,
        },
    },
    indexed=("slug",),  # `orgs show SLUG`
    listing=Listing("/organizations", by_ids="organization_id"),
)
