"""uvicorn as the receiver runs it: the guarded HTTP protocol and the server's limits.

``guarded_protocol`` adds what uvicorn lacks (a header size limit and a deadline for the
request line and headers); ``concurrency_limit`` keeps uvicorn's connection limit under
the file-descriptor limit; ``server_config`` puts them together with keep-alive and
logging settings (``clerksync.server.run`` and the tests' receivers use it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn

MAX_HEADER_BYTES = 16 * 1024  # request line + headers (Node's and h11's default)
HEADER_TIMEOUT = 10.0  # seconds for a request line and headers to arrive
KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open
LIMIT_CONCURRENCY = 1000  # connections + requests; capped below the file-descriptor limit


def guarded_protocol(
    *, max_header_bytes: int = MAX_HEADER_BYTES, header_timeout: float = HEADER_TIMEOUT
) -> type:
    """uvicorn's httptools protocol with what uvicorn lacks: a header size limit (httptools
    takes headers of any size: an 8 MB ``svix-id`` went through) and a deadline for the
    request line and headers (uvicorn times out only idle keep-alive connections, so a
    socket that never sends a byte stayed open for good)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    header_log = logging.getLogger("uvicorn.error")

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _header_bytes: int | None = 0  # bytes of the request line and headers so far
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._header_bytes = 0
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.transport.is_closing():
                return  # refused or timed out: the rest of what was sent is not read
            if self._header_bytes is None:
                return super().data_received(data)
            # The parser gets at most max_header_bytes of a request before its headers
            # are complete: a request line and headers that do not end by then are refused.
            budget = max_header_bytes - self._header_bytes
            head, rest = data[:budget], data[budget:]
            self._header_bytes += len(head)
            super().data_received(head)
            if self._header_bytes is not None and self._header_bytes >= max_header_bytes:
                return self._refuse_headers()
            if rest and not self.transport.is_closing():
                self.data_received(rest)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._header_bytes = None
            self._disarm_header_timer()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._header_bytes = 0  # what follows is the next request's

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # uvicorn's keep-alive timer stops at the next byte, even a blank line that
            # starts no request: the next request's headers are due within the deadline.
            if not self.transport.is_closing() and self._header_bytes is not None:
                self._arm_header_timer()

        def _refuse_headers(self) -> None:
            header_log.warning(
                "Refused a request: line and headers over %d bytes (431)", max_header_bytes
            )
            self._header_bytes = None
            if not self.transport.is_closing():
                body = b'{"outcome":"rejected","error":"headers too large"}'
                self.transport.write(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                    b"content-type: application/json\r\n"
                    b"content-length: " + str(len(body)).encode() + b"\r\n"
                    b"connection: close\r\n\r\n" + body
                )
                self.transport.close()

        def _arm_header_timer(self) -> None:
            self._disarm_header_timer()
            self._header_timer = self.loop.call_later(header_timeout, self._header_timeout)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self._header_bytes is not None and not self.transport.is_closing():
                header_log.warning(
                    "Closed a connection: no complete request within %.0f s", header_timeout
                )
                self.transport.close()

    return GuardedHttpToolsProtocol


def concurrency_limit(wanted: int = LIMIT_CONCURRENCY) -> int:
    """``wanted``, raising the soft file-descriptor limit toward the hard one first, and kept
    below it: past the limit uvicorn answers 503 (Svix retries), where running out of file
    descriptors would fail real deliveries with "Server disconnected"."""
    try:
        import resource
    except ImportError:  # pragma: no cover (Windows)
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    target = min(target, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft == resource.RLIM_INFINITY:
        return wanted
    # Each request may hold a socket and a database connection; keep room for the rest.
    return max(16, min(wanted, (soft - 64) // 2))


def server_config(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    limit_concurrency: int = LIMIT_CONCURRENCY,
    header_timeout: float = HEADER_TIMEOUT,
    keep_alive: int = KEEP_ALIVE,
    log_config: Any = None,
) -> uvicorn.Config:
    """uvicorn's settings for the receiver: the guarded protocol, keep-alive and concurrency
    limits, no access log, and logging left to ``configure_logging`` (``log_config=None``)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(header_timeout=header_timeout),
        log_level="warning",
        log_config=log_config,
        access_log=False,
        lifespan="on",
        limit_concurrency=concurrency_limit(limit_concurrency),
        timeout_keep_alive=keep_alive,
        timeout_graceful_shutdown=10,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        server_header=False,
    )
