"""Run ``clerksync inspect``'s app on uvicorn over loopback HTTP, as the command does."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from clerksync.devtools.inspector import create_inspector
from clerksync.store.database import Store


class RunningInspector:
    def __init__(self, store: Store, *, token: str | None = None, doctor: Any = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.app = create_inspector(
            store, doctor=doctor or (lambda: []), port=self.port, token=token
        )
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> RunningInspector:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("inspector did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
