"""Clerk user JSON -> the Mongo user document. Pure functions, shared by every writer.

The receiver, ``reconcile`` and the tests all go through ``parse_clerk_user`` and
``user_fields`` so a user looks the same whichever path wrote it. Payloads are
checked field by field: a signed body is trusted to come from Clerk, not to be
well-formed, and an operator object (``{"$ne": ""}``) must never reach a filter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clerksync import bookkeeping as bk
from clerksync.errors import InvalidEvent

CLERK_ID = re.compile(r"^[A-Za-z0-9_]{1,100}$")
MAX_TEXT = 2048


@dataclass(frozen=True)
class ClerkUser:
    """The part of a Clerk user clerksync keeps, already validated."""

    id: str
    email: str | None
    first_name: str | None
    last_name: str | None
    username: str | None
    image_url: str | None
    created_at: int | None
    updated_at: int
    public_metadata: Mapping[str, Any]


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise InvalidEvent(f"field {key!r} must be a string or null")
    return value


def _millis(data: Mapping[str, Any], key: str, *, required: bool) -> int | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidEvent(f"field {key!r} must be a timestamp in milliseconds")
    return value


def parse_clerk_id(value: Any) -> str:
    """A Clerk user id, or InvalidEvent: ids go into Mongo filters, so only plain strings pass."""
    if not isinstance(value, str) or not CLERK_ID.match(value):
        raise InvalidEvent("field 'id' must be a Clerk user id such as user_2abc…")
    return value


def primary_email(data: Mapping[str, Any]) -> str | None:
    """The primary address, by ``primary_email_address_id``; never just the first one.

    Clerk sends ``primary_email_address_id: null`` and an empty list for users who
    signed up by phone or username; they have no email, and that is fine.
    """
    addresses = data.get("email_addresses") or []
    if not isinstance(addresses, list):
        raise InvalidEvent("field 'email_addresses' must be a list")
    primary_id = data.get("primary_email_address_id")
    if primary_id is not None and not isinstance(primary_id, str):
        raise InvalidEvent("field 'primary_email_address_id' must be a string or null")
    for entry in addresses:
        if not isinstance(entry, Mapping):
            raise InvalidEvent("each entry of 'email_addresses' must be an object")
        address = _text(entry, "email_address")
        if primary_id is not None and entry.get("id") == primary_id:
            return address.lower() if address else None
    return None


def parse_clerk_user(data: Any) -> ClerkUser:
    """Validate a Clerk user object (webhook ``data`` or a Backend API user)."""
    if not isinstance(data, Mapping):
        raise InvalidEvent("the user must be a JSON object")
    metadata = data.get("public_metadata")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, Mapping):
        raise InvalidEvent("field 'public_metadata' must be an object")
    updated_at = _millis(data, "updated_at", required=True)
    assert updated_at is not None
    return ClerkUser(
        id=parse_clerk_id(data.get("id")),
        email=primary_email(data),
        first_name=_text(data, "first_name"),
        last_name=_text(data, "last_name"),
        username=_text(data, "username"),
        image_url=_text(data, "image_url") or _text(data, "profile_image_url"),
        created_at=_millis(data, "created_at", required=False),
        updated_at=updated_at,
        public_metadata=dict(metadata),
    )


def user_fields(user: ClerkUser) -> dict[str, Any]:
    """The fields a Clerk user sets on its document (``$set``); ``isAdmin``/``createdAt`` excluded.

    ``isAdmin`` belongs to MongoDB (promote/demote) and ``createdAt`` to the
    first write, so an update never resets either. ``clerksync.updatedAt`` orders
    deliveries; ``clerksync.metadata`` is Clerk's copy of our keys as last seen,
    which decides whether a write-back is needed.
    """
    metadata = user.public_metadata
    return {
        "clerkId": user.id,
        "email": user.email,
        "firstName": user.first_name,
        "lastName": user.last_name,
        "username": user.username,
        "profilePicture": user.image_url,
        bk.UPDATED_AT: user.updated_at,
        bk.SEEN: {
            "userMongoId": metadata.get("userMongoId"),
            "isAdmin": metadata.get("isAdmin"),
        },
    }


def wanted_metadata(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What Clerk's ``publicMetadata`` must hold for this document."""
    return {"userMongoId": str(doc["_id"]), "isAdmin": bool(doc.get("isAdmin", False))}


def clerk_copy_differs(clerk_metadata: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
    """True when Clerk's ``publicMetadata`` does not hold what it should for ``doc``."""
    wanted = wanted_metadata(doc)
    return (
        clerk_metadata.get("userMongoId") != wanted["userMongoId"]
        or clerk_metadata.get("isAdmin") is not wanted["isAdmin"]
    )


def metadata_differs(doc: Mapping[str, Any]) -> bool:
    """True when Clerk's copy as last seen (``clerksync.metadata``) does not match the document."""
    return clerk_copy_differs(bk.field(doc, bk.SEEN) or {}, doc)


def public_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The documented JSON shape of a user (``users list --json``): no internal fields."""

    def iso(value: Any) -> str | None:
        return value.isoformat().replace("+00:00", "Z") if value is not None else None

    return {
        "id": str(doc["_id"]),
        "clerkId": doc.get("clerkId"),
        "email": doc.get("email"),
        "firstName": doc.get("firstName"),
        "lastName": doc.get("lastName"),
        "username": doc.get("username"),
        "profilePicture": doc.get("profilePicture"),
        "isAdmin": bool(doc.get("isAdmin", False)),
        "createdAt": iso(doc.get("createdAt")),
        "updatedAt": iso(doc.get("updatedAt")),
    }
