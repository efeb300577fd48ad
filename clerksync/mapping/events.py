"""A verified webhook body -> a validated ``Event``, or InvalidEvent (a 400). No I/O: the
receiver and replay share it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from clerksync.errors import InvalidEvent
from clerksync.kinds.orgs import (
    ClerkMembership,
    ClerkOrganization,
    parse_deleted_organization,
    parse_membership,
    parse_organization,
)
from clerksync.kinds.user import ClerkUser, parse_clerk_id, parse_clerk_user

if TYPE_CHECKING:
    from clerksync.mapping.schema import Schema


#: any Clerk object id (``sess_…``, ``ema_…``, ``role_…``): what the log names for a type
#: clerksync does not sync
OBJECT_ID = re.compile(r"^[A-Za-z0-9_]{1,100}$")


INSTANCE_ID = re.compile(r"^ins_[A-Za-z0-9_]{1,64}$")


USER_EVENTS = ("user.created", "user.updated", "user.deleted")


ORG_EVENTS = (
    "organization.created",
    "organization.updated",
    "organization.deleted",
    "organizationMembership.created",
    "organizationMembership.updated",
    "organizationMembership.deleted",
)


@dataclass(frozen=True)
class Event:
    """A verified, validated delivery; ``user`` is set for created/updated events, ``org``
    for ``organization.created|updated``, ``membership`` for every ``organizationMembership.*``.
    ``object_id`` names what the event is about, whatever its type (for the log)."""

    type: str
    user_id: str | None
    user: ClerkUser | None
    #: the Clerk instance that sent it (``instance_id``), when it names one plainly
    instance_id: str | None = None
    org: ClerkOrganization | None = None
    membership: ClerkMembership | None = None
    object_id: str | None = None


def parse_event(body: bytes, schema: Schema | None = None) -> Event:
    """A verified body -> Event, or InvalidEvent (a 400: retrying cannot fix it).

    ``schema`` is the mapping the store writes with: its metadata keys decide what of
    Clerk's ``public_metadata`` is kept (the default mapping when not given)."""
    from clerksync.mapping.schema import DEFAULT

    event = _parse(body)
    _check_storable(event, schema or DEFAULT)
    return event


def _parse(body: bytes) -> Event:
    try:
        payload = json.loads(body)
    except ValueError:
        raise InvalidEvent("body is not JSON") from None
    except RecursionError:
        raise InvalidEvent("body is nested too deeply") from None
    if not isinstance(payload, dict):
        raise InvalidEvent("body is not a JSON object")
    _check_depth(payload)
    event_type = payload.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise InvalidEvent("field 'type' must be a string")
    data = payload.get("data")
    instance = payload.get("instance_id")
    instance = instance if isinstance(instance, str) and INSTANCE_ID.match(instance) else None
    if event_type in ORG_EVENTS:
        return parse_org_event(event_type, data, instance)
    if event_type not in USER_EVENTS:
        return Event(event_type, None, None, instance, object_id=_loggable_id(data))
    if not isinstance(data, dict):
        raise InvalidEvent("field 'data' must be an object")
    if event_type == "user.deleted":
        user_id = parse_clerk_id(data.get("id"))
        return Event(event_type, user_id, None, instance, object_id=user_id)
    user = parse_clerk_user(data)
    return Event(event_type, user.id, user, instance, object_id=user.id)


def parse_org_event(event_type: str, data: Any, instance: str | None = None) -> Event:
    """``organization.*`` and ``organizationMembership.*``, validated field by field."""
    if not isinstance(data, dict):
        raise InvalidEvent("field 'data' must be an object")
    if event_type == "organization.deleted":
        deleted = parse_deleted_organization(data)
        return Event(event_type, None, None, instance, object_id=deleted.id)
    if event_type.startswith("organization."):
        org = parse_organization(data)
        return Event(event_type, None, None, instance, org=org, object_id=org.id)
    member = parse_membership(data)
    return Event(event_type, member.user_id, None, instance, membership=member, object_id=member.id)


def _loggable_id(data: Any) -> str | None:
    """The id of an event type clerksync ignores, for the log, if it looks like an id."""
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and OBJECT_ID.match(value) else None


#: nesting every reader of the stored body can parse again (``events show``, ``replay``):
#: Python's JSON parser stops at its recursion limit (1000) minus the caller's stack, so
#: what the receiver's thread could take, a deeper CLI stack could not. Far past any Clerk
#: event (a handful of levels); ``unsafe_metadata`` 40 or 500 levels deep is taken.
MAX_DEPTH = 512


def _check_depth(payload: dict[str, Any]) -> None:
    """InvalidEvent when the body nests deeper than ``MAX_DEPTH``: a bound that does not
    depend on the stack of whoever parses it."""
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidEvent(f"body is nested deeper than {MAX_DEPTH} levels")
        children = value.values() if isinstance(value, dict) else value
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


def _check_storable(event: Event, schema: Schema) -> None:
    """InvalidEvent unless MongoDB can store what clerksync stores of this event: a signed
    body that cannot be stored is a 400 (a retry cannot fix it), never a 500 that Svix
    retries for days.

    Only what is written is checked: the parsed fields of the user, organization or
    membership, and the type-checked copy of our metadata keys (``user_fields``). The rest
    of the body (``unsafe_metadata``, which end users set from the frontend,
    ``private_metadata``, unmapped keys) is never written as fields, only as the log's
    compressed bytes: a 1e20 or 40 levels of nesting there must never refuse a signup
    (only nesting past ``MAX_DEPTH``, which no reader could parse again, does).
    JSON allows what BSON does not: integers past 64 bits (OverflowError) and unpaired
    surrogates (``"\\ud800"``, UnicodeEncodeError); ``bson.encode`` finds both in C.
    """
    import bson

    from clerksync.mapping.users import user_fields

    stored: dict[str, Any] = {}
    if event.user is not None:
        user = event.user  # public_metadata is stored only as the typed copy, never whole
        parsed = {
            f.name: getattr(user, f.name) for f in fields(user) if f.name != "public_metadata"
        }
        stored["user"] = {"parsed": parsed, "set": user_fields(event.user, schema.users)}
    if event.org is not None:  # every field of these is written (organization_fields)
        stored["org"] = asdict(event.org)
    if event.membership is not None:
        stored["membership"] = asdict(event.membership)
    try:
        bson.encode(stored)
    except OverflowError:
        raise InvalidEvent("body holds an integer MongoDB cannot store (over 64 bits)") from None
    except UnicodeError:
        raise InvalidEvent("body holds text that is not valid Unicode (a lone surrogate)") from None
    except (bson.errors.InvalidDocument, ValueError, TypeError) as exc:
        raise InvalidEvent(f"body cannot be stored: {exc.__class__.__name__}") from None
