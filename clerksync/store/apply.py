"""Applying a verified event: the one entry the receiver and ``events replay`` share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clerksync.mapping.events import Event

if TYPE_CHECKING:
    from clerksync.store.users import UserStore


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
