"""What a delivery changed: its payload against the previous one for the same object.

The log keeps each verified payload (until ``CLERKSYNC_PAYLOAD_TTL_DAYS``), so the change a
delivery brought is the difference between its ``data`` and that of the delivery before it
about the same object (a retry of itself and replays are not "before it"). Fields are
compared flattened (``email_addresses[0].email_address``), old -> new.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from clerksync.deliverylog.readers import DeliveryDetail, deliveries
from clerksync.deliverylog.records import stored_body
from clerksync.store.database import Store

#: a value shown in a change is cut to this many characters
SHOWN = 300
MISSING: Any = object()


@dataclass(frozen=True)
class Change:
    """One field that differs: ``old`` or ``new`` is None when the field was absent."""

    path: str
    old: str | None
    new: str | None

    @property
    def kind(self) -> str:
        return "added" if self.old is None else "removed" if self.new is None else "changed"


@dataclass(frozen=True)
class Changes:
    """The delivery's changes, and which delivery it was compared with (None: the first of
    its object in the log, or one with no object)."""

    previous_id: str | None
    changes: list[Change]


def delivery_changes(store: Store, detail: DeliveryDetail) -> Changes:
    """Compare ``detail``'s payload with the previous payload about the same object."""
    current = detail.delivery
    if current.object_id is None or detail.payload is None:
        return Changes(None, [])
    previous = _previous(store, current.object_id, current.id, current.received_at)
    if previous is None:
        return Changes(None, [])
    previous_id, body = previous
    return Changes(previous_id, diff(_data(body), _data(detail.payload)))


def _previous(
    store: Store, object_id: str, svix_id: str | None, received: Any
) -> tuple[str | None, bytes] | None:
    """The newest delivery about ``object_id`` received before ``received`` that is neither
    this one (its retries) nor a replay, with its payload."""
    for entry in deliveries(store, object_id=object_id, until=received, payload=True):
        if entry.get("source") == "replay" or entry.get("svixId") == svix_id:
            continue
        body = stored_body(entry)
        if body is not None:
            return entry.get("svixId"), body
    return None


def _data(body: bytes) -> Any:
    payload = json.loads(body)
    return payload.get("data") if isinstance(payload, Mapping) else None


def flatten(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Leaves of a JSON value as (path, value): ``a.b``, ``a[0].b``; an empty object or list
    is a leaf of its own."""
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from flatten(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from flatten(item, f"{path}[{index}]")
    else:
        yield path, value


def diff(old: Any, new: Any) -> list[Change]:
    """The leaves that differ between two JSON values, in the new value's order (removed ones
    last), each shown as JSON cut to ``SHOWN`` characters."""
    before = dict(flatten(old))
    after = dict(flatten(new))
    changes = [
        Change(path, _shown(before.get(path, MISSING)), _shown(value))
        for path, value in after.items()
        if path not in before or _same(before[path]) != _same(value)
    ]
    changes += [
        Change(path, _shown(value), None) for path, value in before.items() if path not in after
    ]
    return changes


def _same(value: Any) -> tuple[str, Any]:
    """A leaf as compared: its type too, so ``true`` and ``1`` (equal in Python) differ."""
    return type(value).__name__, value


def _shown(value: Any) -> str | None:
    if value is MISSING:
        return None
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"
