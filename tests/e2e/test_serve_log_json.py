"""``clerksync serve --log-json``: every line on stderr is JSON, uvicorn's and the CLI's too."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

from clerksync.devtools.payloads import clerk_user, event
from tests.conftest import WEBHOOK_SECRET, free_port
from tests.receiver.test_hardening import partial_request
from tests.support.receiver import post, wait_listening


def send_raw(port: int, data: bytes, *, read: bool = True) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(data)
            while read and sock.recv(65536):
                pass
        except (BrokenPipeError, ConnectionResetError):
            pass


def test_log_json_is_json_on_every_line(db_env: dict[str, str], tmp_path) -> None:
    port = free_port()
    env = {**os.environ, **db_env, "WEBHOOK_SECRET": WEBHOOK_SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "clerksync", "serve", "--log-json", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_listening(proc, port)
        url = f"http://127.0.0.1:{port}/api/webhooks/clerk"
        payload = event("user.created", clerk_user(user_id="user_json"))
        assert post(url, WEBHOOK_SECRET, payload).status_code == 200
        assert post(url, "whsec_" + "QUJD" * 8, payload).status_code == 400
        send_raw(port, b"\x16\x03\x01 this is not HTTP\r\n\r\n")  # uvicorn warns
        send_raw(port, b"GET /healthz HTTP/1.1\r\nx-big: " + b"a" * 100_000 + b"\r\n\r\n")
        send_raw(port, partial_request(), read=False)  # leaves mid-body
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    lines = err.decode().splitlines()
    entries = [json.loads(line) for line in lines]  # every line parses
    assert out == b""
    loggers = {e["logger"] for e in entries}
    assert {"clerksync.serve", "clerksync.server", "uvicorn.error"} <= loggers, entries
    outcomes = [e.get("outcome") for e in entries if e["logger"] == "clerksync.server"]
    assert outcomes == ["applied", "rejected", "rejected"], entries
    assert any("(431)" in e.get("message", "") for e in entries), entries
    disconnect = [e for e in entries if "disconnected" in (e.get("error") or "")]
    assert len(disconnect) == 1  # one line, no traceback
    assert not any("Traceback" in line for line in lines)
