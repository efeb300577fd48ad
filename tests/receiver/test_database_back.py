"""After a database outage, the first delivery that finds it back lets the others through.

The outage is a real pause: the wire server in a process of its own, stopped with SIGSTOP
(it holds its connections and answers nothing) and resumed with SIGCONT. Before the fix the
deliveries that arrived while one probed were answered 503 at once, each costing a Svix
retry minutes later, though the database was back a moment after.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from clerksync.devtools.payloads import clerk_user, event
from clerksync.settings import load_settings
from clerksync.store.connect import connect
from tests.conftest import WEBHOOK_SECRET
from tests.receiver.test_hardening import port_of
from tests.receiver.test_outage import signed_request
from tests.support.receiver import RunningReceiver, post
from tests.support.wireserver import WireServer


class Paused:
    """A wire server of the test's own that it can pause and resume."""

    def __init__(self, folder: Path) -> None:
        self.server = WireServer(folder)
        self.url = self.server.start()

    @property
    def pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


@pytest.fixture
def paused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Paused]:
    db = Paused(tmp_path)
    monkeypatch.setenv("MONGODB_URL", db.url)
    monkeypatch.setenv("MONGODB_DB", "back")
    monkeypatch.setenv("CLERKSYNC_MONGO_TIMEOUT_MS", "2000")
    monkeypatch.setenv("WEBHOOK_SECRET", WEBHOOK_SECRET)
    try:
        yield db
    finally:
        db.resume()
        db.server.stop()


def send_at_once(running: RunningReceiver, requests: list[bytes], then: object) -> list[int]:
    """Send every request on a socket of its own at the same moment, call ``then()``, and
    return the statuses."""
    socks = [socket.create_connection(("127.0.0.1", port_of(running))) for _ in requests]
    barrier = threading.Barrier(len(socks) + 1)

    def deliver(i: int) -> int:
        barrier.wait()
        socks[i].sendall(requests[i])
        answer = b""
        while chunk := socks[i].recv(65536):
            answer += chunk
        return int(answer[9:12])

    try:
        with ThreadPoolExecutor(len(socks)) as pool:
            answers = pool.map(deliver, range(len(socks)))
            barrier.wait()
            then()  # type: ignore[operator]
            return list(answers)
    finally:
        for sock in socks:
            sock.close()


def test_the_first_delivery_that_finds_the_database_back_lets_the_others_through(
    paused: Paused,
) -> None:
    running = RunningReceiver(load_settings(), db_timeout=1.0).start()
    try:
        ok = post(running.url, WEBHOOK_SECRET, event("user.created", clerk_user(user_id="user_a")))
        assert ok.status_code == 200
        paused.pause()
        # Three deliveries that time out: the database is away.
        away = send_at_once(running, [signed_request(100 + i) for i in range(3)], lambda: None)
        assert away == [503] * 3
        assert running.receiver.database.away()

        # Twenty arrive while it is still paused: one probes (and waits on the paused
        # server), the others wait for its answer. The server resumes, the probe's write
        # goes through, and so do all the others, at once.
        running.receiver.db_timeout = 20.0  # the probe waits for the resume, however loaded

        def resume_soon() -> None:
            time.sleep(0.5)
            paused.resume()

        statuses = send_at_once(running, [signed_request(i) for i in range(20)], resume_soon)
        assert statuses == [200] * 20
    finally:
        running.stop()
    store = connect(load_settings())
    try:
        ids = {doc[store.clerk_id] for doc in store.users.find({}, {store.clerk_id: 1})}
    finally:
        store.close()
    assert {f"user_o{i:03d}" for i in range(20)} <= ids


def test_a_probe_that_finds_it_still_away_answers_the_waiting_deliveries_503_together(
    paused: Paused,
) -> None:
    running = RunningReceiver(load_settings(), db_timeout=1.0).start()
    try:
        ok = post(running.url, WEBHOOK_SECRET, event("user.created", clerk_user(user_id="user_a")))
        assert ok.status_code == 200
        paused.pause()
        send_at_once(running, [signed_request(100 + i) for i in range(3)], lambda: None)
        assert running.receiver.database.away()
        statuses = send_at_once(running, [signed_request(i) for i in range(10)], lambda: None)
        assert statuses == [503] * 10
    finally:
        paused.resume()
        running.stop()
    assert json.loads(ok.text)["outcome"] == "applied"


def test_a_delivery_after_the_database_is_back_gets_the_indexes_made_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The receiver started while the database was away: its index maker backs off (1, 2,
    4, 8 s...). Before the fix, once the database was back, every delivery was a 503 until
    the back-off ended (up to 30 s); now the first delivery makes it try at once."""
    from tests.receiver.test_outage import Database

    database = Database(tmp_path / "db")
    monkeypatch.setenv("MONGODB_URL", database.url)
    monkeypatch.setenv("MONGODB_DB", "late")
    monkeypatch.setenv("CLERKSYNC_MONGO_TIMEOUT_MS", "500")
    monkeypatch.setenv("WEBHOOK_SECRET", WEBHOOK_SECRET)
    caplog.set_level(logging.ERROR, "clerksync.server")
    running = RunningReceiver(load_settings()).start()  # the database is not there
    try:
        deadline = time.monotonic() + 60
        while not any("retrying in 8 s" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
            time.sleep(0.05)
        time.sleep(1.0)  # the index maker now sleeps about 7 s more
        database.start()
        payload = event("user.created", clerk_user(user_id="user_late"))
        answer = post(running.url, WEBHOOK_SECRET, payload)
        assert answer.status_code == 200, answer.text
    finally:
        running.stop()
        database.stop()
