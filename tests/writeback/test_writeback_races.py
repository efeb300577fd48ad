"""Write-backs under contention: a poisoned document, promote/demote against a slow Clerk,
and Clerk's per-user limit with two receivers on one database."""

from __future__ import annotations

import threading
import time

import httpx

from clerksync.clerk.pacing import PerUserWindow, RetryPolicy, instance_pacer
from clerksync.devtools.payloads import clerk_user, event
from clerksync.jobs.admin import SetAdminResult, set_admin
from clerksync.kinds.user import USER, parse_clerk_user
from clerksync.mapping import bookkeeping as bk
from clerksync.settings import load_settings
from clerksync.store.connect import connect
from clerksync.store.database import Store
from clerksync.store.lookups import find_user
from clerksync.store.mongo import utcnow
from clerksync.writeback.queue import queue_of
from clerksync.writeback.writeback import Limits
from tests.conftest import WEBHOOK_SECRET
from tests.support.fakeclerk import FakeClerk
from tests.support.receiver import RunningReceiver, post
from tests.support.writes import page, upsert
from tests.writeback.test_writeback import FAST, in_sync, wait_for


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def test_a_poisoned_payload_is_stored_type_checked_and_written_back(
    receivers, store: Store, fake_clerk: FakeClerk
) -> None:
    running = RunningReceiver(load_settings(), **FAST).start()
    receivers.append(running)
    poisoned = fake_clerk.add_user(user_id="user_poison")
    poisoned["public_metadata"] = {"userMongoId": nested(20), "isAdmin": "yes"}
    fake_clerk.users["user_poison"]["public_metadata"] = dict(poisoned["public_metadata"])
    assert post(running.url, WEBHOOK_SECRET, event("user.created", poisoned)).status_code == 200
    others = [fake_clerk.add_user(user_id=f"user_fine{n}") for n in range(3)]
    for user in others:
        assert post(running.url, WEBHOOK_SECRET, event("user.created", user)).status_code == 200
    ids = ["user_poison", *(u["id"] for u in others)]
    wait_for(lambda: all(in_sync(fake_clerk, store, i) for i in ids))
    # What is kept of Clerk's copy is type-checked: the list never reached the document.
    again = {**poisoned, "id": "user_poison2"}
    upsert(store, USER, parse_clerk_user(again), likely_new=True)
    stored = find_user(store, "user_poison2")
    assert bk.field(stored, bk.SEEN) == {"userMongoId": None, "isAdmin": None}
    touched = store.users.update_one({"clerkId": "user_poison2"}, {"$set": {"probe": 1}})
    assert touched.modified_count == 1  # the document can still be updated (claimed)


def test_a_document_the_database_cannot_update_does_not_hold_up_the_others(
    receivers, store: Store, fake_clerk: FakeClerk
) -> None:
    # Left by an older version: a 900-deep list in the document; every update of it fails
    # on the wire server, so it can be neither claimed nor parked. It is the most overdue.
    fake_clerk.add_user(user_id="user_stuck")
    store.users.insert_one(
        {
            "clerkId": "user_stuck",
            "isAdmin": False,
            "clerksync": {"dueAt": utcnow().replace(year=2020), "seq": 1, "metadata": nested(900)},
        }
    )
    users = [fake_clerk.add_user(user_id=f"user_next{n}") for n in range(5)]
    page(store, USER, (parse_clerk_user(u) for u in users))  # due, behind the stuck one
    running = RunningReceiver(load_settings(), **FAST).start()
    receivers.append(running)
    wait_for(lambda: all(in_sync(fake_clerk, store, u["id"]) for u in users))
    assert fake_clerk.users["user_stuck"]["public_metadata"] == {}
    assert queue_of(store).pending() == 1


def test_promote_then_demote_with_a_slow_clerk_leaves_clerk_not_admin(
    receivers, store: Store, fake_clerk: FakeClerk, monkeypatch
) -> None:
    running = RunningReceiver(load_settings(), **FAST).start()
    receivers.append(running)
    user = fake_clerk.add_user(user_id="user_flip")
    post(running.url, WEBHOOK_SECRET, event("user.created", user))
    wait_for(lambda: in_sync(fake_clerk, store, "user_flip"))
    fake_clerk.latency = 0.8  # every Clerk request takes 0.8 s
    gateway = running.receiver.gateway
    results: dict[str, SetAdminResult] = {}

    def run(name: str, value: bool) -> None:
        cli_store = connect(load_settings())  # each command is its own process
        try:
            results[name] = set_admin(cli_store, gateway, "user_flip", value)
        finally:
            cli_store.close()

    promote = threading.Thread(target=run, args=("promote", True))
    promote.start()
    wait_for(lambda: fake_clerk.in_flight["user_flip"] > 0)  # the promote's PATCH is in flight
    run("demote", False)
    promote.join()
    assert results["promote"].clerk == "updated" and results["demote"].clerk == "updated"
    wait_for(lambda: in_sync(fake_clerk, store, "user_flip"))
    assert find_user(store, "user_flip")["isAdmin"] is False
    assert fake_clerk.users["user_flip"]["public_metadata"]["isAdmin"] is False
    # the demote's write came last
    assert fake_clerk.metadata_writes[-1] == (
        "user_flip",
        {
            "userMongoId": str(find_user(store, "user_flip")["_id"]),
            "isAdmin": False,
        },
    )


def test_per_user_limit_and_single_writer_hold_across_two_receivers(
    receivers, store: Store, fake_clerk: FakeClerk
) -> None:
    fake_clerk.window = 2.0  # Clerk's 10 writes per user, in a 2 s window to keep this short

    def limits() -> Limits:
        return Limits(
            pacer=instance_pacer(1000),
            policy=RetryPolicy(base=0.05, cap=0.5),
            per_user=PerUserWindow(limit=10, window=2.0),
        )

    first = RunningReceiver(load_settings(), **FAST, writeback_limits=limits()).start()
    receivers.append(first)
    second = RunningReceiver(
        load_settings(), store=connect(load_settings()), **FAST, writeback_limits=limits()
    ).start()
    receivers.append(second)
    user = fake_clerk.add_user(user_id="user_busy")
    post(first.url, WEBHOOK_SECRET, event("user.created", user))
    wait_for(lambda: in_sync(fake_clerk, store, "user_busy"))
    mongo_id = str(find_user(store, "user_busy")["_id"])
    fake_clerk.latency = 0.02  # a write takes a while: two at once would overlap
    with httpx.Client() as client:
        for n in range(24):  # Clerk's copy says admin each time: each needs a write-back
            stale = {**user, "updated_at": user["updated_at"] + n + 1}
            stale["public_metadata"] = {"userMongoId": mongo_id, "isAdmin": True}
            target = (first, second)[n % 2]
            assert post(target.url, WEBHOOK_SECRET, event("user.updated", stale), client=client)
    # Fired without waiting: both receivers' workers contend for the one user.
    wait_for(lambda: in_sync(fake_clerk, store, "user_busy"))
    assert fake_clerk.rate_limited == 0  # never over 10 writes in any 2 s, both together
    assert 2 <= len(fake_clerk.metadata_writes) <= 25  # some coalesce, none is repeated
    spans = sorted((s, e) for u, s, e in fake_clerk.patch_spans if u == "user_busy")
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:], strict=False))


def test_an_absurd_retry_after_from_clerk_defers_by_the_cap_not_by_years(
    store: Store,
) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from clerksync.clerk.gateway import ClerkGateway
    from clerksync.writeback.writeback import LeaseKeeper, write_back

    class Throttled(BaseHTTPRequestHandler):
        """A Clerk that answers every request 429 with ``Retry-After: 1e9`` (~31 years)."""

        def do_PATCH(self) -> None:  # noqa: N802  (http.server's naming)
            self.rfile.read(int(self.headers.get("content-length") or 0))
            body = b'{"errors": [{"code": "too_many_requests", "message": "slow down"}]}'
            self.send_response(429)
            self.send_header("retry-after", "1e9")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Throttled)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        gateway = ClerkGateway(
            "sk_test_" + "x" * 40, api_url=f"http://127.0.0.1:{server.server_port}/v1"
        )
        upsert(store, USER, parse_clerk_user(clerk_user(user_id="user_throttled")), likely_new=True)
        limits = Limits(instance_pacer(9.5), RetryPolicy(), PerUserWindow())
        keeper = LeaseKeeper(queue_of(store))
        before = utcnow()
        result = write_back(
            queue_of(store), gateway, store.clerk_key("user_throttled"), limits, keeper
        )
        keeper.stop()
    finally:
        server.shutdown()
        server.server_close()
    assert result.outcome == "deferred" and result.retry_at is not None
    waited = (result.retry_at - before).total_seconds()
    assert 60 <= waited <= 70  # capped at 60 s (plus jitter), not 1e9 s
    assert limits.pacer.paused_until - time.monotonic() <= 70  # nobody else waits years
    doc = find_user(store, "user_throttled")
    assert bk.field(doc, bk.DUE) is not None and "429" in bk.field(doc, bk.ERROR)


def test_sync_metadata_leaves_a_user_another_process_is_writing_back(
    store: Store, fake_clerk: FakeClerk
) -> None:
    from clerksync.clerk.gateway import ClerkGateway
    from clerksync.jobs.metadata import sync_metadata
    from clerksync.writeback.queue import WriteBackQueue, queue_of

    ids = [fake_clerk.add_user(user_id=f"user_sm{n}")["id"] for n in range(3)]
    page(store, USER, (parse_clerk_user(fake_clerk.users[i]) for i in ids))
    receiver = WriteBackQueue(store.users, store.schema)  # a receiver mid-write, elsewhere
    assert receiver.claim(store.clerk_key(ids[0])) is not None
    gateway = ClerkGateway(fake_clerk.secret_key, api_url=fake_clerk.url)
    summary = sync_metadata(store, gateway, rate=1000)
    assert summary.updated == 2 and summary.busy == 1
    assert {user for user, _ in fake_clerk.metadata_writes} == set(ids[1:])
    assert queue_of(store).pending() == 1  # the receiver's user keeps its mark


def test_promote_reports_a_write_back_another_worker_dropped_after_its_change(
    store: Store, fake_clerk: FakeClerk
) -> None:
    """Another process's worker claims the user just after promote's change (promote finds
    it busy) and drops it, Clerk not knowing the user: promote says failed, with the
    worker's reason, not updated. The worker's turns come from a command listener on
    promote's own client, so they fall exactly between promote's claim and its next look."""
    from typing import Any

    from pymongo import MongoClient, monitoring

    from clerksync.clerk.gateway import ClerkGateway
    from clerksync.writeback.queue import WriteBackQueue

    upsert(store, USER, parse_clerk_user(clerk_user(user_id="user_unknown")), likely_new=True)
    other = WriteBackQueue(store.users, store.schema)  # another process: its own lease owner
    key = {"_id": find_user(store, "user_unknown")["_id"]}
    turns: list[str] = []

    class Between(monitoring.CommandListener):
        def started(self, event: Any) -> None: ...

        def failed(self, event: Any) -> None: ...

        def succeeded(self, event: Any) -> None:
            if event.command_name != "update" or turns == ["claimed", "dropped"]:
                return
            if not turns and event.reply.get("nModified") == 1:  # promote's change is in
                assert other.claim(key, due_only=False) is not None
                turns.append("claimed")
            elif turns == ["claimed"] and event.reply.get("n") == 0:  # promote found it busy
                doc = other.users.find_one(key)
                other.drop(doc, "user not found in Clerk")
                turns.append("dropped")

    address = store.client.address
    assert address is not None
    client: MongoClient[Any] = MongoClient(
        host=address[0], port=address[1], directConnection=True, event_listeners=[Between()]
    )
    gateway = ClerkGateway(fake_clerk.secret_key, api_url=fake_clerk.url)
    try:
        result = set_admin(Store(client, store.name, store.schema), gateway, "user_unknown", True)
    finally:
        client.close()
        gateway.close()
    assert turns == ["claimed", "dropped"]
    assert result.clerk == "failed" and result.error == "user not found in Clerk"
