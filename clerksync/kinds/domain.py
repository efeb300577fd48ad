"""A Clerk organization domain: ``organizationDomain.created|updated|deleted``, and the
instance-wide ``GET /organization_domains``.

Shapes (Clerk's documented examples, and the Backend API's ``OrganizationDomain``): ``id``
(``orgdmn_…``; Clerk's own examples also write ``orgdm_…``), ``organization_id``, ``name``
(``acme.com``), ``enrollment_mode``, ``verification`` (``status``: ``verified``…; the list
also says ``affiliation_verification``), ``created_at``, ``updated_at``;
``organizationDomain.deleted`` sends ``{id, object, deleted}``. A domain belongs to its
organization (its delete removes them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clerksync.kinds.base import (
    Kind,
    Listing,
    clerk_id,
    deleted_parser,
    json_object,
    millis,
    text,
    updated_at,
)
from clerksync.kinds.organization import parse_org_id

DOMAIN_ID = re.compile(r"^orgdmn?_[A-Za-z0-9_]{1,100}$")


@dataclass(frozen=True)
class ClerkDomain:
    """The part of an organization domain clerksync keeps, already validated."""

    id: str
    organization_id: str
    name: str
    enrollment_mode: str | None
    verified: bool
    created_at: int | None
    updated_at: int


def verified(data: Mapping[str, Any]) -> bool:
    """Is the domain verified (its ``verification``, else ``affiliation_verification``)?"""
    for key in ("verification", "affiliation_verification"):
        found = data.get(key)
        if found is not None:
            return text(json_object(found, f"field {key!r}"), "status") == "verified"
    return False


def parse_domain(data: Any) -> ClerkDomain:
    """Validate a domain (``organizationDomain.created|updated`` data, or a Backend API one)."""
    data = json_object(data, "the organization domain")
    stamp = updated_at(data)
    name = text(data, "name", required=True)
    assert name is not None
    return ClerkDomain(
        id=clerk_id(data.get("id"), DOMAIN_ID, "id", "organization domain", "orgdmn_"),
        organization_id=parse_org_id(data.get("organization_id"), "organization_id"),
        name=name,
        enrollment_mode=text(data, "enrollment_mode"),
        verified=verified(data),
        created_at=millis(data, "created_at", required=False),
        updated_at=stamp,
    )


DOMAIN = Kind(
    name="organization domain",
    plural="organizationDomains",
    id_re=DOMAIN_ID,
    events={
        "organizationDomain.created": "upsert",
        "organizationDomain.updated": "upsert",
        "organizationDomain.deleted": "delete",
    },
    parse=parse_domain,
    parse_deleted=deleted_parser(DOMAIN_ID, "organization domain", "orgdmn_"),
    fields=("organization_id", "name", "enrollment_mode", "verified"),
    optional=("enrollment_mode", "verified"),
    presets={
        "nextjs": {
            "collection": "organizationDomains",
            "clerk_id": "clerkId",
            "organization_id": "organizationId",
            "name": "name",
            "enrollment_mode": "enrollmentMode",
            "verified": "verified",
            "created_at": "createdAt",
            "updated_at": "updatedAt",
        },
        "fastapi": {
            "collection": "organization_domains",
            "clerk_id": "clerk_domain_id",
            "organization_id": "clerk_org_id",
            "name": "name",
            "enrollment_mode": "enrollment_mode",
            "verified": "verified",
            "created_at": None,
            "updated_at": None,
        },
    },
    parents={"organization": "organization_id"},
    indexed=("organization_id",),
    listing=Listing(
        "/organization_domains",
        # an organization's domains are few: one request lists them all
        per_parent="/organizations/{parent}/domains",
        parent_field="organization_id",
    ),
)
