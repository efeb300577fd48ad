"""The users collection in the app's terms: the Clerk-owned fields clerksync writes, the
app-owned ones it sets on insert at most, the admin flag, the app id, the keys written back
into Clerk's ``publicMetadata``, and the fields a Clerk user sets on its document."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clerksync.kinds.user import ClerkUser

from clerksync.mapping import bookkeeping as bk


def _username_or_fallback(user: ClerkUser) -> str:
    if user.username:
        return user.username
    if user.email:
        return user.email.split("@", 1)[0]
    return user.id


def _full_name(user: ClerkUser) -> str:
    joined = " ".join(part for part in (user.first_name, user.last_name) if part)
    return joined or _username_or_fallback(user)


#: what a Clerk-owned field can hold: a name in a mapping -> the value from a Clerk user
SOURCES: dict[str, Callable[[ClerkUser], Any]] = {
    "id": lambda u: u.id,
    "email": lambda u: u.email,  # the primary address, lower-cased, or null
    "first_name": lambda u: u.first_name,
    "last_name": lambda u: u.last_name,
    "username": lambda u: u.username,
    "image_url": lambda u: u.image_url,
    "phone": lambda u: u.phone,  # the primary phone number, or null
    "full_name": _full_name,  # first and last name joined, else the username fallback
    "username_or_fallback": _username_or_fallback,  # username, email's local part, Clerk id
}


#: what a ``publicMetadata`` key can carry
METADATA_VALUES = ("mongo_id", "admin", "app_id")


@dataclass(frozen=True)
class ClerkField:
    """One Clerk-owned field: the app's ``name`` holds ``source``, or ``default`` when null."""

    name: str
    source: str
    default: Any = None

    def value(self, user: ClerkUser) -> Any:
        found = SOURCES[self.source](user)
        return self.default if found is None else found


@dataclass(frozen=True)
class AdminFlag:
    """Admin rights in the app's terms: ``field == value`` is an admin; ``unset`` is not.
    ``isAdmin``: True/False; ``role``: "admin"/None."""

    field: str
    value: Any = True
    unset: Any = False

    def of(self, doc: Mapping[str, Any]) -> bool:
        found = doc.get(self.field)
        if isinstance(self.value, bool):
            return found is self.value
        return bool(found == self.value)

    def stored(self, admin: bool) -> Any:
        return self.value if admin else self.unset


@dataclass(frozen=True)
class UserMapping:
    """The users collection as the app declares it; see the module docstring."""

    collection: str
    clerk_id: str
    fields: tuple[ClerkField, ...]
    admin: AdminFlag
    on_insert: Mapping[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    updated_at: str | None = None
    app_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: fields other kinds keep on the user's document (logical -> name; None: not kept)
    derived: Mapping[str, str | None] = field(default_factory=dict)

    # -- names ---------------------------------------------------------------------------------

    def field_for(self, source: str) -> str | None:
        """The app field holding ``source`` (the first, if several), or None."""
        return next((f.name for f in self.fields if f.source == source), None)

    @property
    def email(self) -> str | None:
        return self.field_for("email")

    @property
    def username(self) -> str | None:
        return self.field_for("username") or self.field_for("username_or_fallback")

    @property
    def search_fields(self) -> tuple[str, ...]:
        """Fields ``users list --search`` matches: email, names, username."""
        wanted = {"email", "first_name", "last_name", "full_name", "username"}
        wanted.add("username_or_fallback")
        return tuple(f.name for f in self.fields if f.source in wanted)

    # -- values --------------------------------------------------------------------------------

    def clerk_values(self, user: ClerkUser) -> dict[str, Any]:
        """The Clerk-owned fields of ``user``'s document (``$set`` on every write)."""
        values = {f.name: f.value(user) for f in self.fields}
        values[self.clerk_id] = user.id
        return values

    def insert_values(self, now: Any, *, admin: bool) -> dict[str, Any]:
        """The app-owned fields clerksync writes when it creates a document (``$setOnInsert``);
        the app id is added by the store, which allocates it."""
        values = dict(self.on_insert)
        values[self.admin.field] = self.admin.stored(admin)
        if self.created_at:
            values[self.created_at] = now
        return values

    def touched(self, now: Any) -> dict[str, Any]:
        return {self.updated_at: now} if self.updated_at else {}

    def is_admin(self, doc: Mapping[str, Any]) -> bool:
        return self.admin.of(doc)

    def wanted_metadata(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """What Clerk's ``publicMetadata`` must hold for ``doc``."""
        out: dict[str, Any] = {}
        for key, what in self.metadata.items():
            if what == "mongo_id":
                out[key] = str(doc["_id"])
            elif what == "admin":
                out[key] = self.is_admin(doc)
            else:
                value = doc.get(self.app_id or "")
                out[key] = value if isinstance(value, int) and not isinstance(value, bool) else None
        return out

    def metadata_complete(self, metadata: Mapping[str, Any]) -> bool:
        """Does Clerk's copy name every key with a value of the right type? (A new user's
        does not: its write-back is queued in the same write that stores it.)"""
        for key, what in self.metadata.items():
            value = metadata.get(key)
            if what == "mongo_id" and not isinstance(value, str):
                return False
            if what == "admin" and not isinstance(value, bool):
                return False
            if what == "app_id" and (not isinstance(value, int) or isinstance(value, bool)):
                return False
        return True

    def projection(self) -> dict[str, int]:
        """Fields a metadata comparison needs from a document."""
        fields = {self.clerk_id: 1, self.admin.field: 1}
        if self.app_id:
            fields[self.app_id] = 1
        return fields


def same_value(a: Any, b: Any) -> bool:
    """Equal and of the same type: ``True`` is not ``1`` in Clerk's JSON, nor ``1.0``."""
    return type(a) is type(b) and a == b


def user_fields(user: ClerkUser, users: UserMapping) -> dict[str, Any]:
    """The fields a Clerk user sets on its document (``$set``): the Clerk-owned ones only.

    App-owned fields (the admin flag, the app id, ``createdAt``, insert constants) belong
    to the first write or to the app, so an update never resets them.
    ``clerksync.updatedAt`` orders deliveries; ``clerksync.metadata`` is Clerk's copy of
    our keys as last seen, which decides whether a write-back is needed.
    """
    return {
        **users.clerk_values(user),
        bk.UPDATED_AT: user.updated_at,
        bk.SEEN: seen_copy(user.public_metadata, users),
    }


def wanted_metadata(doc: Mapping[str, Any], users: UserMapping) -> dict[str, Any]:
    """What Clerk's ``publicMetadata`` must hold for this document."""
    return users.wanted_metadata(doc)


def agreeing_filter(clerk_metadata: Mapping[str, Any], users: UserMapping) -> dict[str, Any] | None:
    """A filter matching the document whose ``wanted_metadata`` is this Clerk copy, or None
    when no document can match (a key missing or of the wrong type): lets a write that stores
    Clerk's copy decide in its own filter whether a write-back is due
    (``Store.upsert_user``). It agrees with ``clerk_copy_differs``: the admin flag
    compares as ``AdminFlag.of`` does (the flag's value, or anything else)."""
    from bson import ObjectId

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
    clerk_metadata: Mapping[str, Any], doc: Mapping[str, Any], users: UserMapping
) -> bool:
    """True when Clerk's ``publicMetadata`` does not hold what it should for ``doc``."""
    wanted = wanted_metadata(doc, users)
    return any(not same_value(clerk_metadata.get(k), v) for k, v in wanted.items())


def public_view(doc: Mapping[str, Any], users: UserMapping) -> dict[str, Any]:
    """The documented JSON shape of a user (``users list --json``): no internal fields."""

    def iso(value: Any) -> Any:
        return value.isoformat().replace("+00:00", "Z") if hasattr(value, "isoformat") else value

    def get(name: str | None) -> Any:
        return doc.get(name) if name else None

    view = {
        "id": str(doc["_id"]),
        "clerkId": doc.get(users.clerk_id),
        "email": get(users.email),
        "firstName": get(users.field_for("first_name")),
        "lastName": get(users.field_for("last_name")),
        "username": get(users.username),
        "profilePicture": get(users.field_for("image_url")),
        "name": get(users.field_for("full_name")),
        "appId": get(users.app_id),
        # the app's role field when admin rights are a role (the fastapi preset's ``role``)
        "role": None if isinstance(users.admin.value, bool) else get(users.admin.field),
        "isAdmin": users.is_admin(doc),
        "createdAt": iso(get(users.created_at)),
        "updatedAt": iso(get(users.updated_at)),
    }
    for logical, name in users.derived.items():  # the plan: `plan`, `planStatus`
        view[camel(logical)] = get(name)
    return view


def camel(name: str) -> str:
    """``plan_status`` -> ``planStatus``: a logical field as a documented JSON key."""
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def seen_copy(copy: Mapping[str, Any], users: UserMapping) -> dict[str, Any]:
    """What ``clerksync.metadata`` keeps of Clerk's copy: our keys, each only when it has the
    type it should (a nested list where an id should be must not reach the document: on the
    wire server it broke every later update of it, the claim included). Anything else is
    kept as null, which differs from what we want, so the write-back replaces it."""

    def typed(what: str, value: Any) -> Any:
        if what == "mongo_id":
            return value if isinstance(value, str) and len(value) <= 64 else None
        if what == "admin":
            return value if isinstance(value, bool) else None
        # an app id is ours, from a 64-bit counter: a larger number is not one (nor storable)
        is_int = isinstance(value, int) and not isinstance(value, bool)
        return value if is_int and -(2**63) <= value < 2**63 else None

    return {key: typed(what, copy.get(key)) for key, what in users.metadata.items()}
