"""Verify (svix) and parse one webhook delivery. No I/O: the receiver and replay share it.

Signatures cover ``{svix-id}.{svix-timestamp}.{raw body}``, so the raw bytes are
verified before anything parses them. svix's ``Webhook.verify`` returns None
in 2.x, and a malformed signature header raises plain ``ValueError``s
(base64, unpacking) besides ``WebhookVerificationError``: all of it is a 400.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from clerksync.errors import InvalidEvent
from clerksync.orgs import (
    ClerkMembership,
    ClerkOrganization,
    parse_deleted_organization,
    parse_membership,
    parse_organization,
)
from clerksync.users import ClerkUser, parse_clerk_id, parse_clerk_user

if TYPE_CHECKING:
    from clerksync.schema import Schema
    from clerksync.store import UserStore

MAX_BODY = 1024 * 1024
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


class SignatureError(Exception):
    """The delivery is not provably from Clerk: missing headers, bad or stale signature."""


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


def verify(secret: str, body: bytes, headers: Mapping[str, str]) -> None:
    """Raise SignatureError unless ``body`` carries a valid, fresh svix signature."""
    from svix.webhooks import Webhook, WebhookVerificationError

    wanted = {k: headers.get(k, "") for k in ("svix-id", "svix-timestamp", "svix-signature")}
    if not all(wanted.values()):
        missing = ", ".join(k for k, v in wanted.items() if not v)
        raise SignatureError(f"missing header(s): {missing}")
    try:
        Webhook(secret).verify(body, wanted)
    except WebhookVerificationError as exc:
        raise SignatureError(str(exc) or "bad signature") from None
    except ValueError:  # malformed signature header, or a body that is not UTF-8
        raise SignatureError("malformed signature header or body") from None


def parse_event(body: bytes, schema: Schema | None = None) -> Event:
    """A verified body -> Event, or InvalidEvent (a 400: retrying cannot fix it).

    ``schema`` is the mapping the store writes with: its metadata keys decide what of
    Clerk's ``public_metadata`` is kept (the default mapping when not given)."""
    from clerksync.schema import DEFAULT

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

    from clerksync.users import user_fields

    stored: dict[str, Any] = {}
    if event.user is not None:
        user = event.user  # public_metadata is stored only as the typed copy, never whole
        parsed = {
            f.name: getattr(user, f.name) for f in fields(user) if f.name != "public_metadata"
        }
        stored["user"] = {"parsed": parsed, "set": user_fields(event.user, schema)}
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


def sign(
    secret: str, body: bytes, *, msg_id: str | None = None, timestamp: float | None = None
) -> dict[str, str]:
    """Svix headers for ``body``, signed with the svix library exactly as Svix signs."""
    from datetime import datetime, timezone

    from svix.webhooks import Webhook

    msg_id = msg_id or "msg_" + secrets.token_hex(12)
    when = datetime.fromtimestamp(time.time() if timestamp is None else timestamp, timezone.utc)
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(int(when.timestamp())),
        "svix-signature": signature,
        "content-type": "application/json",
    }


def new_secret() -> str:
    """A fresh signing secret in Svix's format (``whsec_`` + base64 of 24 random bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def apply_event(store: UserStore, event: Event) -> tuple[str, bool]:
    """Apply a verified event: (outcome, wants_write_back). One durable write on the hot path.

    The receiver and ``events replay`` both come through here, so a replay
    obeys the same ordering and tombstone rules as a live delivery.
    """
    if event.type in ("user.created", "user.updated") and event.user is not None:
        result = store.upsert_user(event.user, likely_new=event.type == "user.created")
        return result.outcome, result.wants_write_back
    if event.type == "user.deleted" and event.user_id is not None:
        return store.delete_user(event.user_id).outcome, False
    if event.org is not None:
        return store.orgs.upsert_organization(event.org), False
    if event.type == "organization.deleted" and event.object_id is not None:
        return store.orgs.delete_organization(event.object_id), False
    if event.membership is not None:
        if event.type == "organizationMembership.deleted":
            return store.orgs.delete_membership(event.membership.id), False
        return store.orgs.upsert_membership(event.membership), False
    return "ignored", False
