"""A verified webhook body -> a validated ``Event``, or InvalidEvent (a 400: a retry cannot
fix it), and the body as the delivery log keeps it. No I/O: the receiver and replay share
it. Which kind an event is about, and what it does, is the registry's
(``clerksync.kinds.registry``); a type clerksync does not sync is an event of no kind
(acknowledged, ``ignored``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from clerksync.clerk.jsonbody import MAX_DEPTH, NotJson, dumps, loads
from clerksync.errors import InvalidEvent
from clerksync.kinds.base import Action, Kind, noting_cuts
from clerksync.kinds.registry import for_event
from clerksync.kinds.user import USER
from clerksync.mapping.schema import DEFAULT, Schema
from clerksync.mapping.users import user_fields

#: any Clerk object id (``sess_…``, ``ema_…``, ``role_…``): what the log names for a type
#: clerksync does not sync
OBJECT_ID = re.compile(r"^[A-Za-z0-9_]{1,100}$")
INSTANCE_ID = re.compile(r"^ins_[A-Za-z0-9_]{1,64}$")
#: an event type as Clerk names them (``organizationMembership.created``, both spellings of
#: ``subscriptionItem.past_due``): the log stores it, so nothing longer or odder passes
EVENT_TYPE = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")


@dataclass(frozen=True)
class Event:
    """A verified, validated delivery. ``kind`` and ``action`` (``upsert``, ``delete``,
    ``carried``) are None for a type clerksync does not sync; ``items`` are the validated
    objects it stores (one for an upsert; those a parent object carries). ``object_id``
    names what the event is about and ``user_id`` the user it concerns, whatever its type
    (for the log); ``instance_id`` the Clerk instance that sent it, when it names one
    plainly; ``notes`` what was cut to store it."""

    type: str
    kind: Kind | None = None
    action: Action | None = None
    items: tuple[Any, ...] = ()
    object_id: str | None = None
    user_id: str | None = None
    instance_id: str | None = None
    #: what parsing cut or left out of a stored field (``first_name cut to 2048 characters``)
    notes: tuple[str, ...] = ()

    @property
    def item(self) -> Any:
        """The one object an upsert stores (None for other events)."""
        return self.items[0] if self.action == "upsert" else None

    @property
    def likely_new(self) -> bool:
        """A ``*.created`` event: its object is most likely not stored yet."""
        return self.type.endswith(".created")


def parse_event(body: bytes, schema: Schema | None = None) -> Event:
    """A verified body -> Event, or InvalidEvent (a 400: retrying cannot fix it).

    ``schema`` is the mapping the store writes with: its metadata keys decide what of
    Clerk's ``public_metadata`` is kept (the default mapping when not given). A stored text
    field over its limit is cut (or left out) and the event keeps a note of it (``notes``):
    what an end user typed is stored, never refused."""
    with noting_cuts() as cuts:
        event = _parse(body)
    _check_storable(event, schema or DEFAULT)
    return dataclasses.replace(event, notes=tuple(cuts)) if cuts else event


def _parse(body: bytes) -> Event:
    try:
        payload = loads(body, max_depth=MAX_DEPTH)
    except NotJson as exc:
        raise InvalidEvent(f"body {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidEvent("body is not a JSON object")
    event_type = payload.get("type")
    if not isinstance(event_type, str) or not EVENT_TYPE.match(event_type):
        raise InvalidEvent("field 'type' must be an event type such as user.created")
    data = payload.get("data")
    instance = payload.get("instance_id")
    instance = instance if isinstance(instance, str) and INSTANCE_ID.match(instance) else None
    synced = for_event(event_type)
    if synced is None:
        return Event(event_type, object_id=_loggable_id(data), instance_id=instance)
    kind, action = synced
    if not isinstance(data, dict):
        raise InvalidEvent("field 'data' must be an object")
    if action == "delete":
        deleted = kind.parse_deleted(data)
        return Event(event_type, kind, action, (), deleted.id, deleted.user_id, instance)
    if action == "carried":
        assert kind.parse_carrier is not None
        carrier = kind.parse_carrier(data)
        return Event(event_type, kind, action, carrier.items, carrier.id, carrier.user_id, instance)
    item = kind.parse(data)
    return Event(event_type, kind, action, (item,), item.id, kind.user_of(item), instance)


def logged_body(body: bytes, event_type: str | None = None) -> bytes | None:
    """The verified body as the delivery log keeps it: whole, unless its kind says
    otherwise (``Kind.secret``: keys of its data removed, an invitation's ``url``;
    ``Kind.log_payload``: no body at all, a payment attempt's). ``event_type`` when known;
    otherwise (a body that did not parse as an event) it is read from the body."""
    if event_type is None:
        try:
            payload = loads(body)
        except NotJson:
            # What the strict reader refuses (nesting past its 512 levels, say) Python's may
            # read: its type still decides what is kept (an invitation's url never is).
            try:
                payload = json.loads(body)
            except (ValueError, RecursionError):
                return body  # not JSON at all: shown as text, it names no kind
        found = payload.get("type") if isinstance(payload, dict) else None
        event_type = found if isinstance(found, str) else None
    synced = for_event(event_type) if event_type else None
    if synced is None:
        return body
    kind = synced[0]
    if not kind.log_payload:
        return None
    if not kind.secret:
        return body
    try:
        payload = loads(body)
    except NotJson:
        return None  # not an event: what it holds cannot be told apart
    data = payload.get("data") if isinstance(payload, dict) else None
    if isinstance(data, dict):
        for key in kind.secret:
            data.pop(key, None)
    return dumps(payload).encode()


def _loggable_id(data: Any) -> str | None:
    """The id of an event type clerksync ignores, for the log, if it looks like an id."""
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and OBJECT_ID.match(value) else None


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
    JSON allows what BSON does not: unpaired surrogates (``"\\ud800"``, UnicodeEncodeError,
    which Clerk never sends: its JSON is valid UTF-8) and integers past 64 bits (which the
    parser keeps as text, so no validator takes one); ``bson.encode`` finds them in C.
    """
    import bson

    item = event.item
    stored: dict[str, Any] = {}
    if item is not None and event.kind is USER:
        # public_metadata is stored only as the typed copy, never whole
        parsed = {
            f.name: getattr(item, f.name) for f in fields(item) if f.name != "public_metadata"
        }
        stored["user"] = {"parsed": parsed, "set": user_fields(item, schema.users)}
    else:  # every field of the other kinds' objects is written
        stored["items"] = [asdict(i) for i in event.items]
    try:
        bson.encode(stored)
    except OverflowError:
        raise InvalidEvent("body holds an integer MongoDB cannot store (over 64 bits)") from None
    except UnicodeError:
        raise InvalidEvent("body holds text that is not valid Unicode (a lone surrogate)") from None
    except (bson.errors.InvalidDocument, ValueError, TypeError) as exc:
        raise InvalidEvent(f"body cannot be stored: {exc.__class__.__name__}") from None
