"""What a synced kind is, as data, and the field validators every kind's parser shares.

A ``Kind`` says everything the rest of clerksync needs to mirror one Clerk object: its
webhook events and what each does (events about a parent object can carry the kind's
objects: ``subscription.*`` its items), its parser, the logical fields of its document and
their names in each preset, the kinds it belongs to (cascades, tombstones that refuse it),
what of its events the delivery log never keeps, the fields it keeps on a parent's document
(``Rollup``: a user's plan), and the Backend API list it is reconciled from. The store,
reconcile, prune, doctor and ``send`` read these descriptions; none of them has a code path
of its own per kind.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Protocol

from clerksync.clerk.routes import add_route_words
from clerksync.errors import InvalidEvent

#: characters a stored text field keeps (names, username, slug…): past it the text is cut,
#: or for an address, a phone number or a URL (whose first part is another, wrong one) not
#: stored, and the delivery is stored all the same (``noting_cuts`` says which)
MAX_TEXT = 2048
#: JavaScript's Number.MAX_SAFE_INTEGER: Clerk's timestamps are JSON numbers
MAX_MILLIS = 2**53 - 1

#: what an event does to its object; ``carried``: the event is about a parent object that
#: carries objects of the kind, each applied as an upsert (``Kind.parse_carrier``)
Action = Literal["upsert", "delete", "carried"]


class ClerkObject(Protocol):
    """A validated Clerk object: its id and the ``updated_at`` (ms) that orders its states."""

    @property
    def id(self) -> str: ...

    @property
    def updated_at(self) -> int: ...


@dataclass(frozen=True)
class Deleted:
    """What a delete event names: the object's id, and its user's for the log (a
    membership's), when the event carries it."""

    id: str
    user_id: str | None = None


@dataclass(frozen=True)
class Carrier:
    """A parent object an event is about and the kind's objects it carries (a
    subscription and its items): its id and user for the log, the validated objects."""

    id: str
    items: tuple[Any, ...]
    user_id: str | None = None


@dataclass(frozen=True)
class Listing:
    """The instance-wide Backend API list a kind is reconciled from, and how to ask Clerk
    whether ids it did not list are still there (before calling them orphans).

    ``paging``: ``cursor`` (``starting_after``, the users' list: the same cost at any
    depth) or ``offset`` (``{data, total_count}`` pages). ``params``: the list's query
    besides the page (None: oldest first). ``off``: answers that mean the list's feature is
    not enabled on the instance, (status, Clerk's error code or None for any), said as
    ``off_note``: a note, not a failure (Clerk's organizations code always is one).

    Confirmation, the first the kind has: ``by_ids`` names the list's query parameter
    taking ids (100 a request); ``per_parent`` is a path template with ``{parent}`` listing
    one parent's objects (the logical field ``parent_field`` names the parent), filtered by
    ``member_param`` taking the values of the logical field ``member_field`` when given (the
    memberships of one organization, by user id); ``one`` is path templates of one object's
    ``GET`` (``{id}`` and logical fields in braces; the first whose fields the stored
    document has), whose answer holds the object, a page of them, or ``one_key``'s list
    (a payer's subscription's items); a 404 is none."""

    path: str
    paging: Literal["cursor", "offset"] = "offset"
    params: Mapping[str, str] | None = None
    off: tuple[tuple[int, str | None], ...] = ()
    off_note: str = "organizations are not enabled on this Clerk instance"
    by_ids: str | None = None
    per_parent: str | None = None
    parent_field: str | None = None
    member_param: str | None = None
    member_field: str | None = None
    one: tuple[str, ...] = ()
    one_key: str | None = None

    def __post_init__(self) -> None:
        # the kind's requests are labelled by route in the receiver's metrics
        add_route_words(self.path, self.per_parent or "", *self.one)


@dataclass(frozen=True)
class Rollup:
    """Fields a kind keeps on a parent's document, derived from every object of the kind
    stored for that parent (a user's plan from its subscription items). They are
    recomputed from what is stored after each write of such an object and when the
    parent's document is created, so the order deliveries arrive in never matters.

    ``via``: this kind's logical field naming the parent; ``reads``: the logical fields
    ``derive`` reads (with ``clerk_id`` and ``updated_at``, Clerk's ms); ``names``: per
    preset, the parent's logical fields it sets and their names (a mapping file renames or
    drops them in the parent's table); ``derive``: the parent's objects -> those fields'
    values (all None when it has none)."""

    parent: str
    via: str
    reads: tuple[str, ...]
    names: Mapping[str, Mapping[str, str]]
    derive: Callable[[Sequence[Mapping[str, Any]]], Mapping[str, Any]]

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(next(iter(self.names.values())))


def _SAME_NAMED(item: Any) -> Mapping[str, Any]:  # noqa: N802 (a marker, replaced per kind)
    """``Kind.values``' default, replaced in ``__post_init__`` by the attributes named by
    its ``fields``."""
    raise AssertionError("replaced when the Kind is made")


@dataclass(frozen=True)
class Kind:
    """One Clerk object kind clerksync mirrors. See the module docstring."""

    #: ``user``, ``organization``…: the journal's and tombstones' word for it
    name: str
    #: ``users``, ``organizations``…: its mapping section, summary key and default collection
    plural: str
    #: the shape of its Clerk ids (``org_…``): ids go into filters, so only these pass
    id_re: re.Pattern[str]
    #: event type -> what it does; both spellings where Clerk's own code drifts
    events: Mapping[str, Action]
    #: Clerk's JSON (a webhook's data or a list item) -> a validated object, or InvalidEvent
    parse: Callable[[Any], Any]
    #: a delete event's data -> what it names
    parse_deleted: Callable[[Any], Deleted]
    #: the logical fields of the document besides ``clerk_id``, ``created_at``, ``updated_at``
    fields: tuple[str, ...] = ()
    #: those a mapping may drop (``""``): the rest are required
    optional: tuple[str, ...] = ()
    #: a validated object -> its logical fields' values; by default each field is the
    #: attribute of that name (give one only where a value is converted on the way)
    values: Callable[[Any], Mapping[str, Any]] = _SAME_NAMED
    #: per preset, the document's names: ``collection``, ``clerk_id``, each logical field,
    #: ``created_at``/``updated_at`` (None: the preset keeps no such field)
    presets: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    #: parent kind -> the logical field holding its id: a parent's delete removes the
    #: object (cascade), and a parent's tombstone refuses it
    parents: Mapping[str, str] = field(default_factory=dict)
    #: parents whose prune takes the object along, counted under the parent's guard;
    #: an object of another parent Clerk no longer lists is an orphan of its own
    pruned_with: tuple[str, ...] = ()
    #: logical fields worth an index besides the Clerk id (lookups, cascades)
    indexed: tuple[str, ...] = ()
    #: a validated object -> the user it concerns, for the delivery log
    user_of: Callable[[Any], str | None] = lambda item: None
    listing: Listing | None = None
    #: the data of a ``carried`` event -> the parent and the objects it carries
    parse_carrier: Callable[[Any], Carrier] | None = None
    #: keys of an event's data never stored, logged or printed (an invitation's ``url``
    #: holds its acceptance token): the delivery log keeps the body without them
    secret: tuple[str, ...] = ()
    #: does the delivery log keep the body (payment attempts': amounts and cards, no)?
    log_payload: bool = True
    #: logical fields a state without them (None) leaves as stored: not every copy of the
    #: object carries them (the Backend API's subscription items have no subscription id)
    sticky: tuple[str, ...] = ()
    #: fields kept on parents' documents from their objects of this kind
    rollups: tuple[Rollup, ...] = ()

    def __post_init__(self) -> None:
        if self.values is _SAME_NAMED:
            names = self.fields
            object.__setattr__(self, "values", lambda item: {f: getattr(item, f) for f in names})

    def tombstone_keys(self, item: Any) -> list[str]:
        """The Clerk ids whose tombstone refuses this object: its own and its parents'."""
        values = self.values(item) if self.parents else {}
        return [item.id, *(str(values[f]) for f in self.parents.values() if values.get(f))]


# -- validators shared by every parser --------------------------------------------------------


def json_object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidEvent(f"{what} must be a JSON object")
    return value


_cuts: ContextVar[list[str] | None] = ContextVar("clerksync_cuts", default=None)


@contextlib.contextmanager
def noting_cuts() -> Iterator[list[str]]:
    """Collect what the validators below cut or left out while parsing (one note per field:
    ``first_name cut to 2048 characters``), for the log and the delivery's record."""
    found: list[str] = []
    token = _cuts.set(found)
    try:
        yield found
    finally:
        _cuts.reset(token)


def _note(message: str) -> None:
    found = _cuts.get()
    if found is not None and message not in found:
        found.append(message)


def text(
    data: Mapping[str, Any], key: str, *, required: bool = False, whole: bool = False
) -> str | None:
    """A string (non-empty when ``required``), or None. Over ``MAX_TEXT`` characters it is
    cut to them; when only the ``whole`` value means anything (an address, a number, a URL:
    its first part is another, wrong one) it is left out (None). Either way it is noted,
    never a refusal: an end user typed it, and Clerk took it."""
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        kind = "a non-empty string" if required else "a string or null"
        raise InvalidEvent(f"field {key!r} must be {kind}")
    if len(value) > MAX_TEXT:
        if whole and not required:
            _note(f"{key} over {MAX_TEXT} characters, not stored")
            return None
        _note(f"{key} cut to {MAX_TEXT} characters")
        return value[:MAX_TEXT]
    return value


def millis(data: Mapping[str, Any], key: str, *, required: bool) -> int | None:
    """A timestamp in milliseconds (a non-negative JSON integer), or None."""
    value = data.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MILLIS:
        # Clerk's own clock, not an end user's: a value that is no timestamp is a 400
        raise InvalidEvent(f"field {key!r} must be a timestamp in milliseconds")
    return value


def updated_at(data: Mapping[str, Any]) -> int:
    found = millis(data, "updated_at", required=True)
    assert found is not None
    return found


def boolean(data: Mapping[str, Any], key: str) -> bool:
    """A JSON boolean (false when missing or null)."""
    value = data.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidEvent(f"field {key!r} must be true or false")
    return value


def email(data: Mapping[str, Any], key: str = "email_address") -> str:
    """A non-empty address, lower-cased (as Clerk keeps addresses, and as lookups compare)."""
    value = text(data, key, required=True)
    assert value is not None
    if "@" not in value:
        raise InvalidEvent(f"field {key!r} must be an email address")
    return value.lower()


def optional_id(
    value: Any, pattern: re.Pattern[str], key: str, noun: str, prefix: str
) -> str | None:
    """A Clerk id of one kind, or None for null or "" (Clerk's "no organization")."""
    if value is None or value == "":
        return None
    return clerk_id(value, pattern, key, noun, prefix)


def deleted_parser(pattern: re.Pattern[str], noun: str, prefix: str) -> Callable[[Any], Deleted]:
    """The parser of a ``*.deleted`` event's data that names the object alone
    (``{id, object, deleted}``)."""

    def parse(data: Any) -> Deleted:
        found = json_object(data, "field 'data'").get("id")
        return Deleted(clerk_id(found, pattern, "id", noun, prefix))

    return parse


def clerk_id(value: Any, pattern: re.Pattern[str], key: str, noun: str, prefix: str) -> str:
    """A Clerk id of one kind, or InvalidEvent: ids go into filters, so only plain strings
    of the kind's shape pass (never an operator object such as ``{"$ne": ""}``)."""
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidEvent(f"field {key!r} must be a Clerk {noun} id such as {prefix}2abc…")
    return value


def as_datetime(value: int | None) -> datetime | None:
    """A Clerk timestamp (ms) as the BSON date an app's model compares with, or None."""
    return None if value is None else datetime.fromtimestamp(value / 1000, tz=timezone.utc)
