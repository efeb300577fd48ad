"""Applying a verified event through the one write path: what the receiver and
``events replay`` share, so a replay obeys the same ordering and tombstone rules as a live
delivery."""

from __future__ import annotations

from clerksync.mapping.events import Event
from clerksync.store.writer import Writer


def apply_event(writer: Writer, event: Event) -> tuple[str, bool]:
    """Apply a verified event: (outcome, wants_write_back). One durable write on the hot path;
    a type clerksync does not sync is ``ignored``."""
    if event.kind is None or event.object_id is None:
        return "ignored", False
    if event.action == "delete":
        return writer.delete(event.kind, event.object_id).outcome, False
    result = writer.upsert(event.kind, event.item, likely_new=event.likely_new)
    return result.outcome, result.wants_write_back
