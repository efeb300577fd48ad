"""Run ``clerksync inspect``'s app on uvicorn over loopback HTTP, as the command does."""

from __future__ import annotations

from typing import Any

import uvicorn

from clerksync.devtools.inspector import create_inspector
from clerksync.store.database import Store
from tests.support.receiver import RunningApp


class RunningInspector(RunningApp):
    def __init__(self, store: Store, *, token: str | None = None, doctor: Any = None) -> None:
        self._bind()  # the app is told its port (it checks the Host header against it)
        self.app = create_inspector(
            store, doctor=doctor or (lambda: []), port=self.port, token=token
        )
        self._serve(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
