"""Run the real receiver app on uvicorn over loopback HTTP, and post svix-signed deliveries.

uvicorn gets the settings ``serve`` gives it (``clerksync.receiver.http.server_config``).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import httpx
import uvicorn

from clerksync.clerk.tls import tls_context
from clerksync.clerk.webhooks import sign
from clerksync.receiver.app import Receiver
from clerksync.receiver.asgi import create_app
from clerksync.receiver.http import server_config
from clerksync.settings import Settings


class RunningApp:
    """An ASGI app on uvicorn over loopback HTTP (in a thread), with the receiver's settings."""

    def __init__(self, app: Any, *, limits: dict[str, Any] | None = None) -> None:
        self._bind()
        self.app = app
        self._serve(server_config(self.app, **(limits or {})))

    def _bind(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = self.base + "/api/webhooks/clerk"

    def _serve(self, config: uvicorn.Config) -> None:
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> Any:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{type(self).__name__}: uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


class RunningReceiver(RunningApp):
    def __init__(
        self, settings: Settings, *, limits: dict[str, Any] | None = None, **options: Any
    ) -> None:
        super().__init__(create_app(settings, **options), limits=limits)
        self.receiver: Receiver = self.app.state.receiver


def post(
    url: str,
    secret: str,
    payload: Any,
    *,
    msg_id: str | None = None,
    timestamp: float | None = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    client: httpx.Client | None = None,
) -> httpx.Response:
    """POST ``payload`` signed exactly as Svix signs it (svix library)."""
    body = raw if raw is not None else json.dumps(payload).encode()
    signed = sign(secret, body, msg_id=msg_id, timestamp=timestamp)
    signed.update(headers or {})
    if client is not None:
        return client.post(url, content=body, headers=signed)
    return httpx.post(url, content=body, headers=signed, timeout=30, verify=tls_context())


def wait_listening(proc: Any, port: int, timeout: float = 30) -> None:
    """Until a ``clerksync serve`` started as ``proc`` accepts connections on ``port``; an
    assertion error if it exits first or takes longer than ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
