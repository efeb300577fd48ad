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
from clerksync.schema import Schema, same_value
from clerksync.writeback_queue import seen_copy

CLERK_ID = re.compile(r"^user_[A-Za-z0-9_]{1,95}$")
MAX_TEXT = 2048


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
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise InvalidEvent(f"field {key!r} must be a timestamp in milliseconds")
    return value


def parse_clerk_id(value: Any) -> str:
    """A Clerk user id, or InvalidEvent: ids go into Mongo filters, so only plain strings pass."""
    if not isinstance(value, str) or not CLERK_ID.match(value):
        raise InvalidEvent("field 'id' must be a Clerk user id such as user_2abc…")
    return value


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
    address = _text(entry, "email_address") if entry is not None else None
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
    updated_at = _millis(data, "updated_at", required=True)
    assert updated_at is not None
    email_entry = _primary(data, "email_addresses", "primary_email_address_id")
    phone_entry = _primary(data, "phone_numbers", "primary_phone_number_id")
    return ClerkUser(
        id=parse_clerk_id(data.get("id")),
        email=primary_email(data),
        email_verified=_verified(email_entry),
        phone=_text(phone_entry, "phone_number") if phone_entry is not None else None,
        first_name=_text(data, "first_name"),
        last_name=_text(data, "last_name"),
        username=_text(data, "username"),
        image_url=_text(data, "image_url") or _text(data, "profile_image_url"),
        created_at=_millis(data, "created_at", required=False),
        updated_at=updated_at,
        public_metadata=dict(metadata),
    )


def user_fields(user: ClerkUser, schema: Schema) -> dict[str, Any]:
    """The fields a Clerk user sets on its document (``$set``): the Clerk-owned ones only.

    App-owned fields (the admin flag, the app id, ``createdAt``, insert constants) belong
    to the first write or to the app, so an update never resets them.
    ``clerksync.updatedAt`` orders deliveries; ``clerksync.metadata`` is Clerk's copy of
    our keys as last seen, which decides whether a write-back is needed.
    """
    return {
        **schema.users.clerk_values(user),
        bk.UPDATED_AT: user.updated_at,
        bk.SEEN: seen_copy(user.public_metadata, schema),
    }


def wanted_metadata(doc: Mapping[str, Any], schema: Schema) -> dict[str, Any]:
    """What Clerk's ``publicMetadata`` must hold for this document."""
    return schema.users.wanted_metadata(doc)


def agreeing_filter(clerk_metadata: Mapping[str, Any], schema: Schema) -> dict[str, Any] | None:
    """A filter matching the document whose ``wanted_metadata`` is this Clerk copy, or None
    when no document can match (a key missing or of the wrong type): lets a write that stores
    Clerk's copy decide in its own filter whether a write-back is due
    (``UserStore.upsert_user``). It agrees with ``clerk_copy_differs``: the admin flag
    compares as ``AdminFlag.of`` does (the flag's value, or anything else)."""
    from bson import ObjectId

    users = schema.users
    if not users.metadata_complete(clerk_metadata):
        return None
    query: dict[str, Any] = {}
    for key, what in users.metadata.items():
        value = clerk_metadata.get(key)
        if what == "mongo_id":
            if not ObjectId.is_valid(value) or str(ObjectId(value)) != value:
                return None
            query["_id"] = ObjectId(value)
        elif what == "admin":
            flag = users.admin
            query[flag.field] = flag.value if value else {"$ne": flag.value}
        elif users.app_id:
            query[users.app_id] = value
    return query


def clerk_copy_differs(
    clerk_metadata: Mapping[str, Any], doc: Mapping[str, Any], schema: Schema
) -> bool:
    """True when Clerk's ``publicMetadata`` does not hold what it should for ``doc``."""
    wanted = wanted_metadata(doc, schema)
    return any(not same_value(clerk_metadata.get(k), v) for k, v in wanted.items())


def metadata_differs(doc: Mapping[str, Any], schema: Schema) -> bool:
    """True when Clerk's copy as last seen (``clerksync.metadata``) does not match the document."""
    return clerk_copy_differs(bk.field(doc, bk.SEEN) or {}, doc, schema)


#: the documented keys of ``users list --json``, whatever the schema (a key it lacks is null)
PUBLIC_KEYS = (
    "id",
    "clerkId",
    "email",
    "firstName",
    "lastName",
    "username",
    "profilePicture",
    "isAdmin",
    "createdAt",
    "updatedAt",
)


def public_view(doc: Mapping[str, Any], schema: Schema) -> dict[str, Any]:
    """The documented JSON shape of a user (``users list --json``): no internal fields."""
    users = schema.users

    def iso(value: Any) -> Any:
        return value.isoformat().replace("+00:00", "Z") if hasattr(value, "isoformat") else value

    def get(name: str | None) -> Any:
        return doc.get(name) if name else None

    return {
        "id": str(doc["_id"]),
        "clerkId": doc.get(users.clerk_id),
        "email": get(users.email),
        "firstName": get(users.field_for("first_name")),
        "lastName": get(users.field_for("last_name")),
        "username": get(users.username),
        "profilePicture": get(users.field_for("image_url")),
        "isAdmin": users.is_admin(doc),
        "createdAt": iso(get(users.created_at)),
        "updatedAt": iso(get(users.updated_at)),
    }
