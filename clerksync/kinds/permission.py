"""A Clerk organization permission: ``permission.created|updated|deleted``, and the
instance-wide ``GET /organization_permissions``.

Shapes (Clerk's documented examples, and the Backend API's ``Permission``): ``id``
(``perm_…``), ``key`` (``org:posts:create``), ``name``, ``description``, ``type``
(``system``, ``custom``), ``created_at``, ``updated_at``; ``permission.deleted`` sends
``{id, object, deleted}``.
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
    json_object,
    millis,
    text,
    updated_at,
)

PERMISSION_ID = re.compile(r"^perm_[A-Za-z0-9_]{1,100}$")


@dataclass(frozen=True)
class ClerkPermission:
    """The part of a permission clerksync keeps, already validated."""

    id: str
    key: str
    name: str
    description: str | None
    type: str | None
    created_at: int | None
    updated_at: int


def parse_permission(data: Any) -> ClerkPermission:
    """Validate a permission (``permission.created|updated`` data, or a Backend API one)."""
    data = json_object(data, "the permission")
    stamp = updated_at(data)
    key, name = text(data, "key", required=True), text(data, "name", required=True)
    assert key is not None and name is not None
    return ClerkPermission(
        id=clerk_id(data.get("id"), PERMISSION_ID, "id", "permission", "perm_"),
        key=key,
        name=name,
        description=text(data, "description"),
        type=text(data, "type"),
        created_at=millis(data, "created_at", required=False),
        updated_at=stamp,
    )


PERMISSION = Kind(
    name="permission",
    plural="permissions",
    id_re=PERMISSION_ID,
    events={
        "permission.created": "upsert",
        "permission.updated": "upsert",
        "permission.deleted": "delete",
    },
    parse=parse_permission,
    parse_deleted=deleted_parser(PERMISSION_ID, "permission", "perm_"),
    fields=("key", "name", "description", "type"),
    optional=("description", "type"),
    presets={
        "nextjs": {
            "collection": "permissions",
            "clerk_id": "clerkId",
            "key": "key",
            "name": "name",
            "description": "description",
            "type": "type",
            "created_at": "createdAt",
            "updated_at": "updatedAt",
        },
        "fastapi": {
            "collection": "permissions",
            "clerk_id": "clerk_permission_id",
            "key": "key",
            "name": "name",
            "description": "description",
            "type": "type",
            "created_at": None,
            "updated_at": None,
        },
    },
    indexed=("key",),
    listing=Listing("/organization_permissions", one=("/organization_permissions/{id}",)),
)
