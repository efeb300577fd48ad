"""A database outage: fast 503s, a /healthz that answers, and failed records that survive.

The outage is real: a SecantusDB server of the test's own, stopped and then
started again on the same port and storage.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

# Imported with the module, not in a test: its first import (shapely, numpy) while other
# threads of the worker import too raced in importlib once (KeyError in the module lock).
from secantus import SecantusDBServer

from clerksync.clerk.webhooks import sign
from clerksync.deliverylog.writer import DeliveryLog, record
from clerksync.devtools.payloads import clerk_user, event
from clerksync.settings import load_settings
from clerksync.store.connect import connect
from clerksync.store.database import Store
from clerksync.store.mongo import utcnow
from tests.conftest import WEBHOOK_SECRET, free_port, stop_in_process_server
from tests.receiver.test_hardening import port_of
from tests.support.receiver import RunningReceiver, post


def signed_request(i: int) -> bytes:
    body = json.dumps(event("user.created", clerk_user(user_id=f"user_o{i:03d}"))).encode()
    headers = sign(WEBHOOK_SECRET, body, msg_id=f"msg_out{i:03d}")
    head = "POST /api/webhooks/clerk HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
    head += f"content-length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


class Database:
    """A SecantusDB server on a fixed port that a test can stop and start again."""

    def __init__(self, path: Path) -> None:
        self.port = free_port()
        self.path = path
        self.server = None
        self.url = f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> None:
        self.server = SecantusDBServer(port=self.port, storage_path=str(self.path))
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            stop_in_process_server(self.server)
            self.server = None


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    db = Database(tmp_path / "db")
    db.start()
    monkeypatch.setenv("MONGODB_URL", db.url)
    monkeypatch.setenv("MONGODB_DB", "outage")
    monkeypatch.setenv("CLERKSYNC_MONGO_TIMEOUT_MS", "2000")
    monkeypatch.setenv("WEBHOOK_SECRET", WEBHOOK_SECRET)
    try:
        yield db
    finally:
        db.stop()


def test_an_outage_answers_503_fast_and_every_503_is_in_the_log_afterwards(
    database: Database, cli
) -> None:
    running = RunningReceiver(load_settings()).start()
    try:
        ok = post(running.url, WEBHOOK_SECRET, event("user.created", clerk_user(user_id="user_a")))
        assert ok.status_code == 200
        database.stop()

        # Signed beforehand, sent on raw sockets at once: the time measured is the server's,
        # not that of 80 client threads signing in this same process.
        requests = [signed_request(i) for i in range(80)]
        socks = [socket.create_connection(("127.0.0.1", port_of(running))) for _ in requests]
        barrier = threading.Barrier(len(socks) + 1)

        def deliver(i: int) -> tuple[int, float]:
            barrier.wait()
            started = time.perf_counter()
            socks[i].sendall(requests[i])
            answer = b""
            while chunk := socks[i].recv(65536):
                answer += chunk
            return int(answer[9:12]), time.perf_counter() - started

        with ThreadPoolExecutor(len(socks)) as pool:
            answers = pool.map(deliver, range(len(socks)))
            barrier.wait()
            time.sleep(0.2)  # the deliveries are in
            started = time.perf_counter()
            health = httpx.get(running.base + "/healthz", timeout=10)
            health_seconds = time.perf_counter() - started
            results = list(answers)
        for sock in socks:
            sock.close()
        assert [status for status, _ in results] == [503] * 80
        slowest = max(seconds for _, seconds in results)
        assert slowest < 5, slowest
        assert health.status_code == 503 and health_seconds < 1, health_seconds

        database.start()
        deadline = time.monotonic() + 20
        while running.receiver.log.pending and time.monotonic() < deadline:
            time.sleep(0.1)
        assert running.receiver.log.pending == 0
    finally:
        running.stop()
    listed = cli("events", "list", "--outcome", "failed", "--limit", "1000", "--json")
    assert listed.exit_code == 0, listed.stderr
    failed = json.loads(listed.stdout)
    assert sorted(r["id"] for r in failed) == [f"msg_out{i:03d}" for i in range(80)]


def test_the_log_keeps_failed_records_before_others_when_memory_runs_out(
    database: Database,
) -> None:
    store: Store = connect(load_settings())
    try:
        log = DeliveryLog(store, max_bytes=100_000, write_timeout=0.5)

        def entry(outcome: str, n: int) -> dict:
            return record(
                svix_id=f"msg_{outcome}{n}",
                event_type="user.created",
                user_id=None,
                outcome=outcome,
                received_at=utcnow(),
                duration_ms=1.0,
                body=bytes(range(256)) * 8,  # ~2 KB that zlib cannot shrink much
            )

        database.stop()
        for n in range(100):
            log.add(entry("applied", n))
            log.add(entry("failed", n))
        assert log.pending_bytes <= 100_000
        assert not log.flush_now()  # the database is away: kept, not dropped
        kept = log.pending
        assert log.dropped["applied"] > 0 and log.dropped["failed"] < 100
        database.start()
        # The driver finds the server again before the log writes: with server selection
        # inside the log's 0.5 s write budget, a bucket could be stored and still time out,
        # and a retry stored it twice (seen once in ~25 parallel runs).
        store.ping()
        deadline = time.monotonic() + 15  # the driver finds the server again first
        while not log.flush_now() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert log.pending == 0
        records = [r for b in store.deliveries.find({}) for r in b["records"]]
        assert len(records) == kept
        failed = [r for r in records if r["outcome"] == "failed"]
        assert len(failed) == 100 - log.dropped["failed"] and len(failed) > len(records) / 2
    finally:
        store.close()


def test_buckets_stay_under_the_database_document_limit(store: Store) -> None:
    log = DeliveryLog(store)
    import os

    for n in range(10):  # ten near-1-MiB payloads zlib cannot shrink: 10 MB in one flush
        log.add(
            record(
                svix_id=f"msg_big{n}",
                event_type="user.created",
                user_id=None,
                outcome="applied",
                received_at=utcnow(),
                duration_ms=1.0,
                body=os.urandom(1000 * 1024),
            )
        )
    assert log.flush_now()
    records = [r for b in store.deliveries.find({}) for r in b["records"]]
    assert sorted(r["svixId"] for r in records) == [f"msg_big{n}" for n in range(10)]


def test_a_record_the_database_refuses_does_not_hold_up_the_others(store: Store) -> None:
    log = DeliveryLog(store)

    def entry(n: int) -> dict:
        return record(
            svix_id=f"msg_r{n}",
            event_type="user.created",
            user_id=None,
            outcome="applied",
            received_at=utcnow(),
            duration_ms=1.0,
        )

    poison = {**entry(99), "note": object()}  # no BSON for it: refused, not unreachable
    for item in (entry(1), poison, entry(2)):
        log.add(item)
    assert log.flush_now()
    assert log.pending == 0 and log.dropped["refused applied"] == 1
    written = sorted(r["svixId"] for b in store.deliveries.find({}) for r in b["records"])
    assert written == ["msg_r1", "msg_r2"]
