"""Applying a verified event through the one write path: what the receiver and
``events replay`` share, so a replay obeys the same ordering and tombstone rules as a live
delivery."""

from __future__ import annotations

from clerksync.mapping.events import Event
from clerksync.store.database import Store
from clerksync.store.writer import Writer

#: what an event that carries several objects did, by what each of its writes did: the
#: first outcome any of them had, in this order
OUTCOMES = ("applied", "duplicate", "stale")


def ignores(store: Store, event: Event) -> bool:
    """Is nothing of this event kept: a type clerksync does not sync, a kind the app does not
    keep, a subscription that carries no items? Known without the database: the receiver
    answers these without a thread or a write (``session.*`` is most of an app's traffic)."""
    kind = event.kind
    if kind is None or event.object_id is None or not store.stores(kind):
        return True
    return event.action != "delete" and not event.items


def apply_event(writer: Writer, event: Event) -> tuple[str, bool]:
    """Apply a verified event: (outcome, wants_write_back). One durable write on the hot path
    (one per object an event carries); one ``ignores`` is ``ignored``."""
    kind = event.kind
    if kind is None or event.object_id is None or ignores(writer.store, event):
        return "ignored", False
    if event.action == "delete":
        return writer.delete(kind, event.object_id).outcome, False
    results = [writer.upsert(kind, item, likely_new=event.likely_new) for item in event.items]
    outcome = next(o for o in OUTCOMES if any(r.outcome == o for r in results))
    return outcome, any(r.wants_write_back for r in results)
