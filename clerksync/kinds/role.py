"""A Clerk organization role: ``role.created|updated|deleted``, and the instance-wide
``GET /organization_roles``.

Shapes (Clerk's documented examples, and the Backend API's ``Role``): ``id`` (``role_…``),
``key`` (``org:admin``…), ``name``, ``description`` (null allowed), ``permissions`` (the
permission objects: the document keeps their keys), ``created_at``, ``updated_at``;
``role.deleted`` sends ``{id, object, slug, deleted}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from clerksync.errors import InvalidEvent
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

ROLE_ID = re.compile(r"^role_[A-Za-z0-9_]{1,100}$")
MAX_PERMISSIONS = 1000


@dataclass(frozen=True)
class ClerkRole:
    """The part of a role clerksync keeps, already validated."""

    id: str
    key: str
    name: str
    description: str | None
    permissions: tuple[str, ...]
    created_at: int | None
    updated_at: int


def permission_keys(data: Any) -> tuple[str, ...]:
    """The keys of a role's ``permissions`` (objects, or plain keys)."""
    found = data.get("permissions")
    if found is None:
        return ()
    if not isinstance(found, list) or len(found) > MAX_PERMISSIONS:
        raise InvalidEvent("field 'permissions' must be a list of permissions")
    keys = []
    for entry in found:
        key = (
            entry
            if isinstance(entry, str)
            else text(json_object(entry, "each permission"), "key", required=True)
        )
        if not key or len(key) > 256:
            raise InvalidEvent("each permission must have a key such as org:posts:create")
        keys.append(key)
    return tuple(keys)


def parse_role(data: Any) -> ClerkRole:
    """Validate a role (``role.created|updated`` data, or a Backend API one)."""
    data = json_object(data, "the role")
    stamp = updated_at(data)
    key, name = text(data, "key", required=True), text(data, "name", required=True)
    assert key is not None and name is not None
    return ClerkRole(
        id=clerk_id(data.get("id"), ROLE_ID, "id", "role", "role_"),
        key=key,
        name=name,
        description=text(data, "description"),
        permissions=permission_keys(data),
        created_at=millis(data, "created_at", required=False),
        updated_at=stamp,
    )


ROLE = Kind(
    name="role",
    plural="roles",
    id_re=ROLE_ID,
    events={"role.created": "upsert", "role.updated": "upsert", "role.deleted": "delete"},
    parse=parse_role,
    parse_deleted=deleted_parser(ROLE_ID, "role", "role_"),
    fields=("key", "name", "description", "permissions"),
    optional=("description", "permissions"),
    values=lambda r: {
        "key": r.key,
        "name": r.name,
        "description": r.description,
        "permissions": list(r.permissions),
    },
    presets={
        "nextjs": {
            "collection": "roles",
            "clerk_id": "clerkId",
            "key": "key",
            "name": "name",
            "description": "description",
            "permissions": "permissions",
            "created_at": "createdAt",
            "updated_at": "updatedAt",
        },
        "fastapi": {
            "collection": "roles",
            "clerk_id": "clerk_role_id",
            "key": "key",
            "name": "name",
            "description": "description",
            "permissions": "permissions",
            "created_at": None,
            "updated_at": None,
        },
    },
    indexed=("key",),
    listing=Listing("/organization_roles", one=("/organization_roles/{id}",)),
)
