"""Every kind clerksync mirrors, in the order they are reconciled (parents first), and the
lookups by event type and by name. Adding a kind is its module and one line here."""

from __future__ import annotations

from clerksync.kinds.base import Action, Kind, Rollup
from clerksync.kinds.domain import DOMAIN
from clerksync.kinds.invitation import INVITATION
from clerksync.kinds.membership import MEMBERSHIP
from clerksync.kinds.organization import ORGANIZATION
from clerksync.kinds.payment_attempt import PAYMENT_ATTEMPT
from clerksync.kinds.permission import PERMISSION
from clerksync.kinds.role import ROLE
from clerksync.kinds.subscription_item import SUBSCRIPTION_ITEM
from clerksync.kinds.user import USER
from clerksync.kinds.waitlist import WAITLIST_ENTRY

KINDS: tuple[Kind, ...] = (
    USER,
    ORGANIZATION,
    MEMBERSHIP,
    SUBSCRIPTION_ITEM,
    PERMISSION,
    ROLE,
    INVITATION,
    DOMAIN,
    WAITLIST_ENTRY,
    PAYMENT_ATTEMPT,
)

BY_NAME = {kind.name: kind for kind in KINDS}
_BY_EVENT: dict[str, tuple[Kind, Action]] = {
    event: (kind, action) for kind in KINDS for event, action in kind.events.items()
}


def for_event(event_type: str) -> tuple[Kind, Action] | None:
    """The kind an event type is about and what it does, or None (a type not synced)."""
    return _BY_EVENT.get(event_type)


def rollups_onto(parent: Kind) -> list[tuple[Kind, Rollup]]:
    """The kinds that keep fields on ``parent``'s documents, and how (a user's plan)."""
    return [(k, r) for k in KINDS for r in k.rollups if r.parent == parent.name]


def children(kind: Kind) -> list[tuple[Kind, str]]:
    """The kinds that belong to ``kind``, with the logical field naming it (cascades)."""
    return [(k, k.parents[kind.name]) for k in KINDS if kind.name in k.parents]


def prune_order() -> list[Kind]:
    """Kinds in the order their orphans are counted and pruned: a kind after the parents
    whose prune takes it along (their cascade journals it), before its other parents (what
    Clerk no longer lists of theirs goes as its own orphans first)."""
    order: list[Kind] = []

    def ready(kind: Kind) -> bool:
        taken_by_parents_first = all(BY_NAME[p] in order for p in kind.pruned_with)
        own_children_first = all(
            child in order for child, _ in children(kind) if kind.name not in child.pruned_with
        )
        return taken_by_parents_first and own_children_first

    while len(order) < len(KINDS):
        kind = next((k for k in KINDS if k not in order and ready(k)), None)
        if kind is None:  # pragma: no cover (the kinds' parents would form a circle)
            raise AssertionError("the kinds' parents form a circle")
        order.append(kind)
    return order
