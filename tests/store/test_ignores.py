"""``ignores``: the receiver answers an event without a thread or the database when nothing
of it is kept. Checked on every documented event, under each schema, against the events
the issue says no app keeps (and payment attempts, kept only when a mapping file asks), and
against what the write path then holds: an event said ignored leaves nothing, any other
leaves its objects (or the tombstones that made it stale, or its own)."""

from __future__ import annotations

import json

import pytest

from clerksync.mapping.events import parse_event
from clerksync.store.apply import apply_event, ignores
from clerksync.store.database import Store
from tests.conftest import ALL_SCHEMAS
from tests.support.examples import EXAMPLES_FILE
from tests.support.writes import writer_of

EXAMPLES = json.loads(EXAMPLES_FILE.read_text())["events"]

#: what no schema keeps: sessions, emails and SMS messages
NEVER_KEPT = {
    "email.created",
    "sms.created",
    *(f"session.{a}" for a in ("created", "ended", "pending", "removed", "revoked")),
}
#: payment attempts: only the mapping file of the tests asks for them
PAYMENTS = {"paymentAttempt.created", "paymentAttempt.updated"}
IGNORED = {"nextjs": NEVER_KEPT | PAYMENTS, "fastapi": NEVER_KEPT | PAYMENTS, "custom": NEVER_KEPT}


def holds(store: Store, ids: list[str]) -> bool:
    """Does any collection the app keeps, or the tombstones, hold one of these Clerk ids?"""
    for kind in store.kinds:
        if store.collection(kind).count_documents({store.key(kind): {"$in": ids}}):
            return True
    return bool(store.tombstones.count_documents({"_id": {"$in": ids}}))


@ALL_SCHEMAS
def test_ignores_exactly_the_events_that_leave_nothing(
    store: Store, request: pytest.FixtureRequest
) -> None:
    writer = writer_of(store)
    skipped = []
    for name, body in EXAMPLES.items():
        event = parse_event(json.dumps(body).encode(), store.schema)
        ids = [event.object_id or ""]  # and, for a stale one, the tombstones that made it so
        if event.kind is not None:
            ids += [key for item in event.items for key in event.kind.tombstone_keys(item)]
        said = ignores(store, event)
        outcome, _ = apply_event(writer, event)
        assert holds(store, ids) != said, (name, said, outcome)
        assert (outcome == "ignored") == said, (name, outcome)
        if said:
            skipped.append(name)
    assert set(skipped) == IGNORED[request.node.callspec.params["schema"]]
