"""``serve``'s process: uvicorn with the receiver, and SIGTERM as a clean exit."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Callable, Iterator
from typing import Any

from clerksync.receiver.asgi import create_app
from clerksync.receiver.http import LIMIT_CONCURRENCY, server_config
from clerksync.receiver.logs import configure_logging
from clerksync.settings import Settings
from clerksync.store.database import Store


def run(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_json: bool = False,
    store: Store | None = None,
    limit_concurrency: int = LIMIT_CONCURRENCY,
    metrics: bool = True,
    users_me: bool = False,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Serve the receiver with uvicorn until interrupted (``users_me``: with
    ``GET /api/users/me``; ``metrics=False``: no ``/metrics``). ``on_started`` runs once
    uvicorn listens and handles Ctrl-C and SIGTERM itself: a "Ctrl-C stops" said before then
    could be answered by a Ctrl-C that asyncio's own handler takes, and the process stays up."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            # What start-up made (modules, the driver, the receiver's parts) lives as long
            # as the process: out of the collector's reach, a full collection under load
            # walks only what deliveries made (less CPU, shorter pauses).
            gc.collect()  # not start-up's garbage: it would never be collected
            gc.freeze()
            if on_started is not None and not self.should_exit:
                on_started()

    configure_logging(json_lines=log_json)
    app = create_app(settings, store=store, metrics=metrics, users_me=users_me)
    config = server_config(app, host=host, port=port, limit_concurrency=limit_concurrency)
    with terminated_as_exit():
        Server(config).run()


@contextlib.contextmanager
def terminated_as_exit() -> Iterator[None]:
    """SIGTERM (``kill``, systemd, ``docker stop``) ends the process as an exit (status 143),
    so the caller's cleanup runs. uvicorn shuts down gracefully on it, then raises it again
    against the handler it found: the default one would kill the process before any
    ``finally`` (``serve`` left its ``serve.json`` behind)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield  # signals are the main thread's
        return

    def exit_now(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_now)
    try:
        yield
    finally:
        # None: a handler installed from C, which Python cannot put back; the default then
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
