"""The delivery log owns its collection and its TTL index: the store's start-up index pass
and the log's writer make the same one, in either order, on the real wire server."""

from __future__ import annotations

import collections
import threading
from typing import Any

import pytest

from clerksync.deliverylog.records import iter_records
from clerksync.deliverylog.writer import DeliveryLog, entry_bytes, record
from clerksync.store import database as deliveries
from clerksync.store.database import Store
from clerksync.store.mongo import utcnow


def ttl_indexes(store: Store) -> list[dict[str, Any]]:
    return [dict(i) for i in store.deliveries.list_indexes() if "expireAfterSeconds" in i]


def write_one(store: Store, svix_id: str) -> None:
    """One record through the log's writer (which makes its index before its first bucket)."""
    log = DeliveryLog(store)
    log.add(
        record(
            svix_id=svix_id,
            event_type="user.created",
            user_id="user_x",
            outcome="applied",
            received_at=utcnow(),
            duration_ms=1.0,
        )
    )
    assert log.flush_now()


@pytest.mark.parametrize("first", ["store", "log"])
def test_the_store_and_the_log_make_one_and_the_same_ttl_index(store: Store, first: str) -> None:
    assert store.deliveries.name == deliveries.DELIVERIES
    store.deliveries.drop()
    if first == "store":
        report = store.ensure_indexes()
        write_one(store, "msg_after")
    else:
        write_one(store, "msg_before")
        report = store.ensure_indexes()
    ours = [r for r in report.results if r.collection == deliveries.DELIVERIES]
    assert [(r.name, r.error) for r in ours] == [(deliveries.TTL_INDEX, None)]
    ttl = ttl_indexes(store)
    assert len(ttl) == 1
    assert ttl[0]["name"] == deliveries.TTL_INDEX and ttl[0]["expireAfterSeconds"] == 0
    assert dict(ttl[0]["key"]) == {"expiresAt": 1}
    assert next(iter_records(store))["outcome"] == "applied"


def test_the_logs_collection_takes_acknowledged_unjournaled_writes(store: Store) -> None:
    # diagnostics, not state: w=1, unlike the users collection's w=majority, j=true
    assert store.deliveries.write_concern.document == {"w": 1}
    assert store.users.write_concern.document["w"] == "majority"


class _RacingQueue(collections.deque):  # type: ignore[type-arg]
    """A queue that lets ``add`` run in another thread at the moment the writer looks at its
    head: where ``add`` drops that very record (memory full), the head is gone."""

    racer: Any = None

    def __getitem__(self, index: Any) -> Any:
        racer, self.racer = self.racer, None
        if racer is not None:
            racer.start()
            racer.join(1.0)  # it ends here unless the writer holds the lock it needs
        return super().__getitem__(index)


def test_a_record_dropped_while_the_writer_takes_it_stops_nothing(store: Store) -> None:
    def entry(svix_id: str, outcome: str) -> dict[str, Any]:
        return record(
            svix_id=svix_id,
            event_type="user.created",
            user_id="user_x",
            outcome=outcome,
            received_at=utcnow(),
            duration_ms=1.0,
        )

    first = entry("msg_first", "applied")
    log = DeliveryLog(store, max_bytes=entry_bytes(first))  # room for one record
    log._other = _RacingQueue()
    log.add(first)
    # A failed record arrives while the writer reads the head: it makes room by dropping it.
    racer = threading.Thread(target=log.add, args=(entry("msg_failed", "failed"),))
    log._other.racer = racer
    assert log.flush_now()
    racer.join(60)  # it finishes once the writer lets go (a loaded machine may take a while)
    assert not racer.is_alive()
    assert log.flush_now()  # what the racer added
    written = [r["svixId"] for r in iter_records(store)]
    assert "msg_first" in written
    assert len(written) + sum(log.dropped.values()) == 2  # each one written or counted dropped
    assert log.pending == 0 and log.pending_bytes == 0
