"""The HTTP layer's limits as ``serve`` runs them, over real loopback sockets: the header
deadline counts from the connection, the over-the-limit 503 is the documented JSON, and
real deliveries keep a share of connections idle ones cannot take (issue 19, findings 7, 8).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from clerksync.clerk.webhooks import sign
from clerksync.devtools.payloads import clerk_user, event
from clerksync.settings import load_settings
from clerksync.store.database import Store
from tests.conftest import WEBHOOK_SECRET
from tests.receiver.test_hardening import port_of
from tests.support.receiver import RunningReceiver, post


@pytest.fixture
def small(store: Store, webhook_secret: str) -> Iterator[RunningReceiver]:
    """A receiver whose limit is 16 requests in flight (the least ``serve`` takes)."""
    running = RunningReceiver(load_settings(), limits={"limit_concurrency": 16}).start()
    try:
        yield running
    finally:
        running.stop()


def closed_by(sock: socket.socket, deadline: float) -> bool:
    """Did the server close ``sock`` by ``deadline`` (a ``time.monotonic()``)?"""
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if sock.recv(1) == b"":
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False


def test_the_header_deadline_counts_from_the_connection_not_the_first_byte(
    store: Store, webhook_secret: str
) -> None:
    """Finding 7: the deadline restarted at the first byte, so a connection that sent its
    first byte just before it could be held for about twice the deadline."""
    running = RunningReceiver(load_settings(), limits={"header_timeout": 2.0}).start()
    try:
        with socket.create_connection(("127.0.0.1", port_of(running)), timeout=5) as sock:
            connected = time.monotonic()
            time.sleep(1.6)
            sock.sendall(b"POST /api/webhooks/clerk HTTP/1.1\r\n")  # then nothing more
            # closed at 2.0 s from the connection; a restarted deadline would say 3.6 s
            assert closed_by(sock, connected + 3.0)
    finally:
        running.stop()


def held_deliveries(port: int, count: int) -> list[socket.socket]:
    """``count`` deliveries whose headers pass the pre-body checks and whose body never
    comes: each holds a request in flight (up to the body deadline)."""
    body = json.dumps(event("user.created", clerk_user(user_id="user_held"))).encode()
    head = "POST /api/webhooks/clerk HTTP/1.1\r\nhost: x\r\n"
    head += f"content-length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in sign(WEBHOOK_SECRET, body).items())
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(head.encode() + b"\r\n")
        socks.append(sock)
    return socks


def test_past_the_limit_the_503_is_the_documented_json(small: RunningReceiver) -> None:
    """Finding 8: past ``--limit-concurrency`` uvicorn answered a plain-text 503."""
    held = held_deliveries(port_of(small), 16)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the 16 are in flight once their headers are in
            answer = post(small.url, WEBHOOK_SECRET, event("user.created", clerk_user()))
            if answer.status_code == 503:
                break
            time.sleep(0.05)
        assert answer.status_code == 503
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == {
            "outcome": "rejected",
            "error": "busy: at the connection limit, retry later",
        }
    finally:
        for sock in held:
            sock.close()
    ok = post(small.url, WEBHOOK_SECRET, event("user.created", clerk_user(user_id="user_after")))
    assert ok.status_code == 200, ok.text


def test_a_sender_reconnecting_idle_sockets_past_the_limit_does_not_stop_deliveries(
    small: RunningReceiver, store: Store
) -> None:
    """Finding 8: idle sockets counted against the limit, so a sender holding more than it
    (and reconnecting as they were closed) had every real delivery answered 503."""
    port = port_of(small)
    stop = threading.Event()
    reconnected = [0]

    def flood() -> None:
        """Hold 24 idle sockets (more than the limit of 16); reconnect each one closed."""
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(24)]
        while not stop.is_set():
            for i, sock in enumerate(socks):
                sock.setblocking(False)
                try:
                    gone = sock.recv(1) == b""
                except BlockingIOError:
                    gone = False
                except OSError:
                    gone = True
                if gone:
                    sock.close()
                    socks[i] = socket.create_connection(("127.0.0.1", port))
                    reconnected[0] += 1
            time.sleep(0.002)
        for sock in socks:
            sock.close()

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    try:
        time.sleep(1.5)  # 24 held past the grace: over the limit, as the sender keeps it
        statuses = [
            post(
                small.url,
                WEBHOOK_SECRET,
                event("user.created", clerk_user(user_id=f"user_real{i}")),
            ).status_code
            for i in range(10)
        ]
    finally:
        stop.set()
        flooder.join(10)
    assert statuses == [200] * 10
    assert store.count() == 10
    assert reconnected[0] >= 1  # the server closed idle ones past the limit; they came back
