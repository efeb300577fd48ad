"""The app's schema: which fields of the app's documents clerksync reads and writes, and how.

clerksync writes into collections an app owns, so every module that touches an app document
asks one ``Schema`` (chosen by ``CLERKSYNC_SCHEMA``) instead of naming fields itself:

``nextjs``   the guide's Mongoose model: ``clerkId``, ``email``, ``firstName``, ``lastName``,
             ``username``, ``profilePicture``, ``isAdmin``, ``createdAt``, ``updatedAt``
``fastapi``  the debug report's Beanie ``User``: ``clerk_user_id``, ``user_id`` (an integer
             from an atomic counter), ``username``, ``name``, ``email``, ``phone``,
             ``address``, ``password_hash``, ``role``, ``auth_provider``, ``is_active``,
             ``status``
a path       a TOML mapping file that starts from a preset and overrides it (docs/schema.md,
             "Mapping files"; ``load_mapping_file`` below)

What a mapping says about the users collection (``UserMapping``):

- ``fields``: the *Clerk-owned* fields, set on every write from a Clerk value (``SOURCES``:
  plain values, and computed ones such as the full name or the username fallback), each with
  an optional default for when Clerk has none;
- ``on_insert``: *app-owned* constants, written when clerksync creates the document, never
  again; the admin flag, ``created_at`` and the app id are app-owned too. Anything the
  mapping does not name is the app's and never touched;
- ``admin``: the admin flag, as a boolean field or as a role value (``role == "admin"``);
- ``app_id``: an integer id allocated from an atomic counter (``clerksync_counters``);
- ``metadata``: the keys written back into Clerk's ``publicMetadata``.

- ``derived``: the fields other kinds keep on a user's document (``Rollup``: the plan).

Building a Schema validates it, so a mapping file's mistake is a configuration error (exit 2)
at start, never a strange document later. Every other kind gets its section beside
``users`` (``clerksync.mapping.sections``); a section without a collection is a kind the
app does not store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from clerksync.kinds.base import Kind
from clerksync.kinds.registry import KINDS, rollups_onto
from clerksync.kinds.user import USER
from clerksync.mapping.sections import Section
from clerksync.mapping.users import AdminFlag, ClerkField, UserMapping


@dataclass(frozen=True)
class Schema:
    """The mapping every reader and writer of app documents goes through: the users' mapping
    and one section per other kind, each preset giving its own, each with its ``[section]``
    in a mapping file."""

    name: str
    users: UserMapping
    sections: Mapping[str, Section]

    def section(self, kind: Kind | str) -> Section:
        """The section of a kind other than users."""
        return self.sections[kind if isinstance(kind, str) else kind.name]

    def names(self, kind: Kind) -> UserMapping | Section:
        """The kind's collection, Clerk-id field and timestamps, users included."""
        return self.users if kind.name == "user" else self.sections[kind.name]

    def stores(self, kind: Kind) -> bool:
        """Does the app keep this kind (users always; others when their section has a
        collection)?"""
        return kind.name == "user" or (kind.name in self.sections and self.section(kind).stored)

    @property
    def kinds(self) -> tuple[Kind, ...]:
        """The kinds the app keeps, in the registry's order (parents first)."""
        return tuple(kind for kind in KINDS if self.stores(kind))

    def derived(self, parent: Kind) -> dict[str, str]:
        """The fields other kinds keep on ``parent``'s documents, logical -> the app's name
        (those the mapping dropped left out)."""
        if not self.stores(parent):
            return {}
        fields = {f for _, rollup in rollups_onto(parent) for f in rollup.fields}
        names = self.users.derived if parent.name == "user" else self.section(parent).names
        return {f: name for f in sorted(fields) if (name := names.get(f)) is not None}

    @property
    def organizations(self) -> Section:
        return self.sections["organization"]

    @property
    def memberships(self) -> Section:
        return self.sections["membership"]


def _sections(preset: str) -> dict[str, Section]:
    return {kind.name: Section.preset(kind, preset) for kind in KINDS if kind.presets}


def _derived(preset: str) -> dict[str, str | None]:
    """The preset's names of the fields other kinds keep on a user's document."""
    return {f: n for _, rollup in rollups_onto(USER) for f, n in rollup.names[preset].items()}


NEXTJS = Schema(
    name="nextjs",
    users=UserMapping(
        collection="users",
        clerk_id="clerkId",
        fields=(
            ClerkField("email", "email"),
            ClerkField("firstName", "first_name"),
            ClerkField("lastName", "last_name"),
            ClerkField("username", "username"),
            ClerkField("profilePicture", "image_url"),
        ),
        admin=AdminFlag("isAdmin", True, False),
        created_at="createdAt",
        updated_at="updatedAt",
        metadata={"userMongoId": "mongo_id", "isAdmin": "admin"},
        derived=_derived("nextjs"),
    ),
    sections=_sections("nextjs"),
)


FASTAPI = Schema(
    name="fastapi",
    users=UserMapping(
        collection="users",
        clerk_id="clerk_user_id",
        fields=(
            ClerkField("username", "username_or_fallback"),
            ClerkField("name", "full_name"),
            ClerkField("email", "email"),
            ClerkField("phone", "phone", default=""),
        ),
        admin=AdminFlag("role", "admin", None),
        on_insert={
            "address": "",
            "password_hash": None,
            "auth_provider": "clerk",
            "is_active": True,
            "status": "active",
        },
        app_id="user_id",
        metadata={"userMongoId": "mongo_id", "userId": "app_id", "isAdmin": "admin"},
        derived=_derived("fastapi"),
    ),
    sections=_sections("fastapi"),
)


PRESETS: dict[str, Schema] = {"nextjs": NEXTJS, "fastapi": FASTAPI}
DEFAULT = NEXTJS
