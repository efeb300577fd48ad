"""A Clerk user: the validated part clerksync keeps, parsed from webhook ``data`` or a
Backend API user. How a user lands in the app's document is the mapping's
(``clerksync.mapping.users``): the users collection is the app's own, with the app's names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clerksync.errors import InvalidEvent
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

#: a Clerk user id, as opposed to the placeholders an app writes by hand (``clerk_34``)
CLERK_USER_ID = re.compile(r"^user_[A-Za-z0-9_]{1,95}$")


@dataclass(frozen=True)
class ClerkUser:
    """The part of a Clerk user clerksync keeps, already validated."""

    id: str
    email: str | None
    #: the primary address is verified (adoption of an app's own document needs it)
    email_verified: bool
    phone: str | None
    first_name: str | None
    last_name: str | None
    username: str | None
    image_url: str | None
    created_at: int | None
    updated_at: int
    public_metadata: Mapping[str, Any]


def parse_clerk_id(value: Any, key: str = "id") -> str:
    """A Clerk user id, or InvalidEvent: ids go into Mongo filters, so only plain strings pass."""
    return clerk_id(value, CLERK_USER_ID, key, "user", "user_")


def _primary(data: Mapping[str, Any], list_key: str, id_key: str) -> Mapping[str, Any] | None:
    """The entry of ``data[list_key]`` whose id is ``data[id_key]``; never just the first."""
    entries = data.get(list_key) or []
    if not isinstance(entries, list):
        raise InvalidEvent(f"field {list_key!r} must be a list")
    primary_id = data.get(id_key)
    if primary_id is not None and not isinstance(primary_id, str):
        raise InvalidEvent(f"field {id_key!r} must be a string or null")
    found = None
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise InvalidEvent(f"each entry of {list_key!r} must be an object")
        if primary_id is not None and entry.get("id") == primary_id:
            found = entry
    return found


def primary_email(data: Mapping[str, Any]) -> str | None:
    """The primary address, by ``primary_email_address_id``; never just the first one.

    Clerk sends ``primary_email_address_id: null`` and an empty list for users who
    signed up by phone or username; they have no email, and that is fine.
    """
    entry = _primary(data, "email_addresses", "primary_email_address_id")
    address = text(entry, "email_address", whole=True) if entry is not None else None
    return address.lower() if address else None


def _verified(entry: Mapping[str, Any] | None) -> bool:
    verification = entry.get("verification") if entry is not None else None
    return isinstance(verification, Mapping) and verification.get("status") == "verified"


def parse_clerk_user(data: Any) -> ClerkUser:
    """Validate a Clerk user object (webhook ``data`` or a Backend API user)."""
    if not isinstance(data, Mapping):
        raise InvalidEvent("the user must be a JSON object")
    metadata = data.get("public_metadata")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, Mapping):
        raise InvalidEvent("field 'public_metadata' must be an object")
    email_entry = _primary(data, "email_addresses", "primary_email_address_id")
    phone_entry = _primary(data, "phone_numbers", "primary_phone_number_id")
    return ClerkUser(
        id=parse_clerk_id(data.get("id")),
        email=primary_email(data),
        email_verified=_verified(email_entry),
        phone=text(phone_entry, "phone_number", whole=True) if phone_entry is not None else None,
        first_name=text(data, "first_name"),
        last_name=text(data, "last_name"),
        username=text(data, "username"),
        image_url=text(data, "image_url", whole=True)
        or text(data, "profile_image_url", whole=True),
        created_at=millis(data, "created_at", required=False),
        updated_at=updated_at(data),
        public_metadata=dict(metadata),
    )


def parse_deleted_user(data: Any) -> Deleted:
    """``user.deleted`` carries only ``{id, object, deleted}``."""
    user_id = parse_clerk_id(json_object(data, "field 'data'").get("id"))
    return Deleted(user_id, user_id)


USER = Kind(
    name="user",
    plural="users",
    id_re=CLERK_USER_ID,
    events={"user.created": "upsert", "user.updated": "upsert", "user.deleted": "delete"},
    parse=parse_clerk_user,
    parse_deleted=parse_deleted_user,
    user_of=lambda user: user.id,
    # Users page by cursor: Clerk's offsets "get progressively slower and eventually time out"
    listing=Listing("/users", paging="cursor", by_ids="user_id"),
)
