"""The receiver against hostile traffic, over real loopback sockets, on the real wire server."""

from __future__ import annotations

import io
import json
import logging
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import bson
import httpx
import pytest

from clerksync.clerk.webhooks import sign
from clerksync.deliverylog.records import iter_records
from clerksync.deliverylog.writer import DeliveryLog, RejectionSampler
from clerksync.devtools.payloads import clerk_user, event
from clerksync.receiver.logs import JsonLines, RepeatLimit
from clerksync.settings import load_settings
from clerksync.store.database import Store
from tests.conftest import WEBHOOK_SECRET
from tests.support.receiver import RunningReceiver, post


@pytest.fixture
def server_log() -> Iterator[io.StringIO]:
    """What ``serve`` would print: clerksync's and uvicorn's loggers, through its filter."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLines())
    handler.addFilter(RepeatLimit())
    loggers = [logging.getLogger(n) for n in ("clerksync", "uvicorn.error")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def log_bytes(store: Store, running: RunningReceiver) -> int:
    """Bytes the delivery log holds in the database, after a flush."""
    running.receiver.log.flush_now()
    return sum(len(bson.encode(bucket)) for bucket in store.deliveries.find({}))


def raw_request(port: int, head: bytes, *, timeout: float = 10) -> bytes:
    """Send ``head`` on a raw socket and read the answer; b"" if the server cut us off."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        chunks = []
        try:
            sock.sendall(head)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
    return b"".join(chunks)


def partial_request() -> bytes:
    """A signed delivery's headers and the first bytes of its body (the sender then leaves)."""
    body = json.dumps(event("user.created", clerk_user(user_id="user_gone"))).encode()
    headers = sign(WEBHOOK_SECRET, body)
    head = f"POST /api/webhooks/clerk HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body[:10]


def port_of(running: RunningReceiver) -> int:
    return int(running.base.rsplit(":", 1)[1])


@pytest.mark.parametrize(
    "header",
    [
        ("svix-id", "msg_" + "A" * 8 * 1024 * 1024),
        ("svix-signature", "v1,AAAA " * 1_000_000),
    ],
    ids=["8MB-svix-id", "1M-signatures"],
)
def test_huge_headers_are_refused_fast_with_bounded_logs(
    receiver: RunningReceiver, store: Store, server_log: io.StringIO, header: tuple[str, str]
) -> None:
    before = log_bytes(store, receiver)
    body = json.dumps(event("user.created", clerk_user(user_id="user_huge"))).encode()
    headers = {**sign(WEBHOOK_SECRET, body), header[0]: header[1], "content-length": "%d"}
    head = "POST /api/webhooks/clerk HTTP/1.1\r\nhost: x\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    started = time.perf_counter()
    answer = raw_request(port_of(receiver), (head % len(body)).encode() + b"\r\n" + body)
    elapsed = time.perf_counter() - started
    # The answer is a 431, or lost when the server closed while we were still sending.
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:100]
    assert "over 16384 bytes (431)" in server_log.getvalue()
    # The event loop was not held: a real delivery right after goes through.
    ok = post(receiver.url, WEBHOOK_SECRET, event("user.created", clerk_user(user_id="user_ok")))
    assert ok.status_code == 200
    assert store.count() == 1  # only the real one
    grown = log_bytes(store, receiver) - before
    assert grown < 4096, grown  # the real delivery's record; nothing of the 8 MB
    assert len(server_log.getvalue()) < 2048, server_log.getvalue()[:300]
    assert elapsed < 5, elapsed


def test_signature_and_id_headers_are_bounded_inside_the_app(
    receiver: RunningReceiver, store: Store
) -> None:
    payload = event("user.created", clerk_user(user_id="user_hdr"))
    many = post(
        receiver.url,
        WEBHOOK_SECRET,
        payload,
        headers={"svix-signature": " ".join(["v1,AAAA"] * 700)},
    )
    assert many.status_code == 400 and "4 KiB" in many.json()["error"]
    odd = post(
        receiver.url, WEBHOOK_SECRET, payload, headers={"svix-id": "msg_<script>" + "x" * 200}
    )
    assert odd.status_code == 400 and "svix-id" in odd.json()["error"]
    receiver.receiver.log.flush_now()
    ids = {r["svixId"] for r in iter_records(store)}
    assert "msg_?script?" + "x" * 28 + "…" in ids  # recorded cut short, unsafe characters out
    assert store.count() == 0


def test_a_wrong_secret_flood_leaves_a_bounded_log(
    store: Store, webhook_secret: str, server_log: io.StringIO
) -> None:
    sampler = RejectionSampler(sample=20, window=60)
    running = RunningReceiver(load_settings(), log=DeliveryLog(store, sampler=sampler)).start()
    try:
        body = json.dumps(event("user.created", clerk_user(user_id="user_flood"))).encode()
        forged = sign("whsec_" + "QUJD" * 8, body)

        def burst(n: int) -> list[int]:
            with httpx.Client() as client:
                return [
                    client.post(running.url, content=body, headers=forged).status_code
                    for _ in range(n)
                ]

        with ThreadPoolExecutor(6) as pool:
            statuses = [s for part in pool.map(burst, [500] * 6) for s in part]
        assert statuses == [400] * 3000
        # the window closes (as it would 60 s later): one summary record counts the rest
        summary = sampler.close_window(time.monotonic() + 61)
        assert summary is not None
        running.receiver.log.add(summary)
        running.receiver.log.flush_now()
        records = list(iter_records(store))
        assert len(records) == 21
        assert sum(r.get("count", 1) for r in records) == 3000
        assert len(server_log.getvalue().splitlines()) <= 22
    finally:
        running.stop()


def test_idle_sockets_do_not_stop_a_real_delivery(
    store: Store, webhook_secret: str, server_log: io.StringIO
) -> None:
    running = RunningReceiver(load_settings(), limits={"header_timeout": 1.0}).start()
    idle: list[socket.socket] = []
    try:
        for i in range(500):
            sock = socket.create_connection(("127.0.0.1", port_of(running)))
            if i % 5 == 0:  # some dribble half a request line and stop
                sock.sendall(b"POST /api/webhooks/clerk HTTP/1.1\r\nhost: x\r\n")
            idle.append(sock)
        real = post(
            running.url, WEBHOOK_SECRET, event("user.created", clerk_user(user_id="user_r"))
        )
        assert real.status_code == 200
        # After the header deadline the server has closed every one of them.
        deadline = time.monotonic() + 10
        closed = 0
        for sock in idle:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                closed += sock.recv(1) == b""
            except ConnectionResetError:
                closed += 1
            except TimeoutError:
                pass
        assert closed == 500
        assert len(server_log.getvalue().splitlines()) <= 25  # not one line per socket
    finally:
        for sock in idle:
            sock.close()
        running.stop()


def test_a_client_that_leaves_mid_body_is_one_line(
    receiver: RunningReceiver, store: Store, server_log: io.StringIO
) -> None:
    with socket.create_connection(("127.0.0.1", port_of(receiver))) as sock:
        sock.sendall(partial_request())
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while "disconnected" not in server_log.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = server_log.getvalue().splitlines()
    assert len(lines) == 1 and "client disconnected" in json.loads(lines[0])["error"]


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,
        json.dumps(
            event("user.updated", clerk_user(user_id="user_big", updated_at=2**63))
        ).encode(),
        json.dumps(
            event("user.created", {**clerk_user(user_id="user_s"), "first_name": "\ud800"})
        ).encode(),
    ],
    ids=["nested", "overflow", "surrogate"],
)
def test_signed_bodies_the_parser_cannot_take_are_400_with_a_record(
    receiver: RunningReceiver, store: Store, raw: bytes
) -> None:
    response = post(receiver.url, WEBHOOK_SECRET, None, raw=raw, msg_id="msg_unparsable")
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("payload: ")
    receiver.receiver.log.flush_now()
    entry = next(iter_records(store, svix_id="msg_unparsable"))
    assert entry["outcome"] == "rejected" and entry["error"].startswith("payload: ")
    assert store.count() == 0


def test_junk_is_refused_before_its_body_is_read(receiver: RunningReceiver) -> None:
    head = (
        "POST /api/webhooks/clerk HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
        "content-length: 1000000\r\nsvix-id: msg_junk\r\nsvix-timestamp: 1\r\n"
        "svix-signature: v1,AAAA\r\n\r\n"
    )
    answer = raw_request(port_of(receiver), head.encode(), timeout=5)  # and no body at all
    assert answer.startswith(b"HTTP/1.1 400") and b"too old" in answer


def test_a_kept_alive_connection_that_dribbles_is_closed(store: Store, webhook_secret) -> None:
    running = RunningReceiver(load_settings(), limits={"header_timeout": 1.0}).start()
    try:
        with socket.create_connection(("127.0.0.1", port_of(running)), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"}"):
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200")
            # Blank lines are not a request: they stop uvicorn's keep-alive timer, not ours.
            started = time.monotonic()
            closed = False
            while time.monotonic() - started < 4 and not closed:
                try:
                    sock.sendall(b"\r\n")
                    sock.settimeout(0.3)
                    closed = sock.recv(1) == b""
                except TimeoutError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
            assert closed
    finally:
        running.stop()
