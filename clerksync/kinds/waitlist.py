"""A Clerk waitlist entry: ``waitlistEntry.created|updated``, and the instance-wide
``GET /waitlist_entries``.

Shapes (Clerk's documented examples, and the Backend API's ``WaitlistEntry``): ``id``
(``wle_…``), ``email_address``, ``status`` (``pending``, ``invited``, ``rejected``,
``completed``), ``created_at``, ``updated_at``.
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

ENTRY_ID = re.compile(r"^wle_[A-Za-z0-9_]{1,100}$")


@dataclass(frozen=True)
class ClerkWaitlistEntry:
    """The part of a waitlist entry clerksync keeps, already validated."""

    id: str
    email: str
    status: str | None
    created_at: int | None
    updated_at: int


def parse_entry(data: Any) -> ClerkWaitlistEntry:
    """Validate an entry (``waitlistEntry.*`` data, or a Backend API one)."""
    data = json_object(data, "the waitlist entry")
    stamp = updated_at(data)
    return ClerkWaitlistEntry(
        id=clerk_id(data.get("id"), ENTRY_ID, "id", "waitlist entry", "wle_"),
        email=email(data),
        status=text(data, "status"),
        created_at=millis(data, "created_at", required=False),
        updated_at=stamp,
    )


WAITLIST_ENTRY = Kind(
    name="waitlist entry",
    plural="waitlistEntries",
    id_re=ENTRY_ID,
    events={"waitlistEntry.created": "upsert", "waitlistEntry.updated": "upsert"},
    parse=parse_entry,
    parse_deleted=deleted_parser(ENTRY_ID, "waitlist entry", "wle_"),
    fields=("email", "status"),
    optional=("status",),
    presets={
        "nextjs": {
            "collection": "waitlistEntries",
            "clerk_id": "clerkId",
            "email": "email",
            "status": "status",
            "created_at": "createdAt",
            "updated_at": "updatedAt",
        },
        "fastapi": {
            "collection": "waitlist_entries",
            "clerk_id": "clerk_waitlist_entry_id",
            "email": "email",
            "status": "status",
            "created_at": None,
            "updated_at": None,
        },
    },
    indexed=("email",),
    # The list's ``query`` filters by email address (Clerk's reference names no id filter):
    # an entry is confirmed by its address, its id picked out of that page (500: a
    # substring match of other addresses cannot push it off the page).
    listing=Listing("/waitlist_entries", one=("/waitlist_entries?query={email}&limit=500",)),
)
