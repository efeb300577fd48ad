"""Clerk organization and membership JSON -> validated values. Pure functions, no I/O.

The receiver (webhook ``data``), ``reconcile`` (Backend API list pages) and the
tests all go through these parsers, as users go through ``clerksync.users``. A
signed body is trusted to come from Clerk, not to be well-formed: every field is
checked for its type and size, ids must look like Clerk's (``org_…``,
``orgmem_…``, ``user_…``) so an operator object (``{"$ne": ""}``) never reaches
a MongoDB filter, and timestamps are non-negative integers in milliseconds.

Shapes (Clerk's documented examples): an organization carries ``id``, ``name``,
``slug``, ``image_url``, ``created_at``, ``updated_at``; ``organization.deleted``
sends only ``{id, object, slug, deleted}``; a membership (created, updated and
deleted alike) embeds the whole ``organization`` and the member as
``public_user_data.user_id``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clerksync.errors import InvalidEvent
from clerksync.kinds.user import parse_clerk_id

ORG_ID = re.compile(r"^org_[A-Za-z0-9_]{1,100}$")
MEMBERSHIP_ID = re.compile(r"^orgmem_[A-Za-z0-9_]{1,100}$")
MAX_TEXT = 2048
MAX_ROLE = 256
#: JavaScript's Number.MAX_SAFE_INTEGER: Clerk's timestamps are JSON numbers
MAX_MILLIS = 2**53 - 1


@dataclass(frozen=True)
class ClerkOrganization:
    """The part of a Clerk organization clerksync keeps, already validated."""

    id: str
    name: str
    slug: str | None
    image_url: str | None
    created_at: int | None
    updated_at: int


@dataclass(frozen=True)
class ClerkMembership:
    """One user's membership of one organization, with its role, already validated."""

    id: str
    organization_id: str
    user_id: str
    role: str
    created_at: int | None
    updated_at: int


@dataclass(frozen=True)
class DeletedOrganization:
    """What ``organization.deleted`` carries: the id (and the slug, for the log)."""

    id: str
    slug: str | None


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidEvent(f"{what} must be a JSON object")
    return value


def _text(data: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT or (required and not value):
        kind = "a non-empty string" if required else "a string or null"
        raise InvalidEvent(f"field {key!r} must be {kind}")
    return value


def _millis(data: Mapping[str, Any], key: str, *, required: bool) -> int | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MILLIS:
        raise InvalidEvent(f"field {key!r} must be a timestamp in milliseconds")
    return value


def parse_org_id(value: Any, key: str = "id") -> str:
    """An organization id (``org_…``), or InvalidEvent: ids go into filters."""
    if not isinstance(value, str) or not ORG_ID.match(value):
        raise InvalidEvent(f"field {key!r} must be a Clerk organization id such as org_2abc…")
    return value


def parse_membership_id(value: Any) -> str:
    """A membership id (``orgmem_…``), or InvalidEvent."""
    if not isinstance(value, str) or not MEMBERSHIP_ID.match(value):
        raise InvalidEvent("field 'id' must be a Clerk membership id such as orgmem_2abc…")
    return value


def parse_organization(data: Any) -> ClerkOrganization:
    """Validate an organization (``organization.created|updated`` data, or a Backend API one)."""
    data = _object(data, "the organization")
    updated_at = _millis(data, "updated_at", required=True)
    assert updated_at is not None
    name = _text(data, "name", required=True)
    assert name is not None
    return ClerkOrganization(
        id=parse_org_id(data.get("id")),
        name=name,
        slug=_text(data, "slug"),
        image_url=_text(data, "image_url"),
        created_at=_millis(data, "created_at", required=False),
        updated_at=updated_at,
    )


def parse_deleted_organization(data: Any) -> DeletedOrganization:
    """``organization.deleted`` data: ``{id, object, slug, deleted}``."""
    data = _object(data, "field 'data'")
    return DeletedOrganization(id=parse_org_id(data.get("id")), slug=_text(data, "slug"))


def parse_membership(data: Any) -> ClerkMembership:
    """Validate a membership (any ``organizationMembership.*`` data, or a Backend API one)."""
    data = _object(data, "the membership")
    organization = _object(data.get("organization"), "field 'organization'")
    member = _object(data.get("public_user_data"), "field 'public_user_data'")
    role = data.get("role")
    if not isinstance(role, str) or not role or len(role) > MAX_ROLE:
        raise InvalidEvent("field 'role' must be a non-empty string such as org:admin")
    try:
        user_id = parse_clerk_id(member.get("user_id"))
    except InvalidEvent:
        raise InvalidEvent("field 'public_user_data.user_id' must be a Clerk user id") from None
    updated_at = _millis(data, "updated_at", required=True)
    assert updated_at is not None
    return ClerkMembership(
        id=parse_membership_id(data.get("id")),
        organization_id=parse_org_id(organization.get("id"), "organization.id"),
        user_id=user_id,
        role=role,
        created_at=_millis(data, "created_at", required=False),
        updated_at=updated_at,
    )
