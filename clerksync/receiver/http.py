"""uvicorn as the receiver runs it: the guarded HTTP protocol and the server's limits.

``guarded_protocol`` adds what uvicorn lacks: a header size limit, a deadline for the
request line and headers counted from the connection (or the previous answer), and a
connection limit under which real deliveries keep a share (``Admission``) with the
documented JSON 503 past it. ``concurrency_limit`` keeps that limit under the
file-descriptor limit; ``server_config`` puts them together with keep-alive and logging
settings (``clerksync.server.run`` and the tests' receivers use it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from clerksync.receiver.guards import signature_headers_problem
from clerksync.settings import WEBHOOK_PATH

if TYPE_CHECKING:
    import uvicorn

MAX_HEADER_BYTES = 16 * 1024  # request line + headers (Node's and h11's default)
HEADER_TIMEOUT = 10.0  # seconds for a request line and headers to arrive
KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open
LIMIT_CONCURRENCY = 1000  # requests in flight; capped below the file-descriptor limit

#: the 503 past the limit, as every other refusal: JSON with an outcome (Svix retries)
BUSY_BODY = b'{"outcome":"rejected","error":"busy: at the connection limit, retry later"}'


#: seconds a new connection has to send its request before it may be closed for room
CONNECT_GRACE = 1.0


class Admission:
    """The connection limit of one server, with a share kept for real deliveries.

    uvicorn's own limit counted open connections, idle ones included: a sender holding
    more idle sockets than the limit (and reconnecting as they were closed) had every real
    delivery answered 503. Here only requests in flight count. A request is *real* when it
    is a POST to the webhook whose svix headers pass what can be checked before the body
    (present, a timestamp within 5 minutes, a ``v1,`` signature): real deliveries may have
    all ``limit`` requests in flight, any other request only ``limit - reserve``; past
    that, the JSON 503.

    Connections without a request in flight (idle, or still sending their headers) are
    bounded too, for their file descriptors: past ``limit`` of them, the one idle longest
    is closed, once it had ``CONNECT_GRACE`` to send a request (a new connection and an
    idle one look alike until the first bytes come: the newest is never the one closed),
    and past twice ``limit``, whatever its age. One event loop: no lock."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.reserve = max(2, limit // 10)
        #: connections without a request in flight -> since when, longest idle first
        self.idle: collections.OrderedDict[Any, float] = collections.OrderedDict()
        self.real = 0  # real deliveries in flight
        self.other = 0  # other requests in flight

    def admit(self, real: bool) -> bool:
        if real:
            return self.real + self.other < self.limit
        return self.other < self.limit - self.reserve and self.real + self.other < self.limit

    def overflow(self, now: float) -> list[Any]:
        """The idle connections to close now to stay within the bounds above."""
        victims = []
        while len(self.idle) > self.limit:
            oldest, since = next(iter(self.idle.items()))
            if now - since < CONNECT_GRACE and len(self.idle) <= 2 * self.limit:
                break
            del self.idle[oldest]
            victims.append(oldest)
        return victims


async def busy_app(scope: Any, receive: Any, send: Any) -> None:
    """The documented 503 past the limit; the connection closes to free its slot."""
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BUSY_BODY)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BUSY_BODY})


def _is_real_delivery(method: bytes, url: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
    """A POST to the webhook whose svix headers pass the checks made before the body."""
    import httptools

    try:
        path = httptools.parse_url(url).path
    except Exception:  # an invalid URL is no delivery (uvicorn answers it)
        return False
    if method != b"POST" or path != WEBHOOK_PATH.encode():
        return False
    named = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
    return signature_headers_problem(named) is None


class CoalescingTransport:
    """A transport whose writes of one event-loop turn go out as one: uvicorn writes an
    answer's status line and headers, then its body, each a send to the socket (a system
    call, and a packet); a delivery's answer is small, and one send costs the receiver half.
    Everything else is the transport's own; ``close`` sends what is held first."""

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))

    def flush(self) -> None:
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def guarded_protocol(
    *,
    max_header_bytes: int = MAX_HEADER_BYTES,
    header_timeout: float = HEADER_TIMEOUT,
    limit: int = LIMIT_CONCURRENCY,
) -> type:
    """uvicorn's httptools protocol with what uvicorn lacks: a header size limit (httptools
    takes headers of any size: an 8 MB ``svix-id`` went through), a deadline for the
    request line and headers (uvicorn times out only idle keep-alive connections, so a
    socket that never sends a byte stayed open for good) counted from the connection, not
    restarted by the first byte, and ``Admission``'s limit (uvicorn's ``limit_concurrency``
    stays unset). Each call makes a class of its own: its connections share one limit."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    header_log = logging.getLogger("uvicorn.error")
    admission = Admission(limit)
    pending_check: list[asyncio.TimerHandle] = []  # one look-again at a time, per server

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _header_bytes: int | None = 0  # bytes of the request line and headers so far
        _header_timer: asyncio.TimerHandle | None = None
        _in_flight: collections.deque[str]  # "real" or "other", per request admitted

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
            self._header_bytes = 0
            self._in_flight = collections.deque()
            self._arm_header_timer()
            admission.idle[self] = self.loop.time()
            self._make_room()

        def _make_room(self) -> None:
            """Close the idle connections past the bound; look again once the youngest
            ones had their grace, while there are more than the limit."""
            victims = admission.overflow(self.loop.time())
            for victim in victims:
                victim.transport.close()
            if victims:
                header_log.warning(
                    "Closed %d idle connections: over %d without a request",
                    len(victims),
                    admission.limit,
                )
            if len(admission.idle) > admission.limit and not pending_check:
                pending_check.append(self.loop.call_later(CONNECT_GRACE, self._look_again))

        def _look_again(self) -> None:
            pending_check.clear()
            self._make_room()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            admission.idle.pop(self, None)
            while self._in_flight:
                self._release()
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

        def on_headers_complete(self) -> None:
            self._header_bytes = None
            self._disarm_header_timer()
            real = _is_real_delivery(self.parser.get_method(), self.url, self.headers)
            if not admission.admit(real):
                header_log.warning(
                    "Refused a request: %d requests in flight (503)",
                    admission.real + admission.other,
                )
                app, self.app = self.app, busy_app
                try:
                    super().on_headers_complete()
                finally:
                    self.app = app
                return
            admission.idle.pop(self, None)
            kind = "real" if real else "other"
            self._in_flight.append(kind)
            if real:
                admission.real += 1
            else:
                admission.other += 1
            super().on_headers_complete()

        def _release(self) -> None:
            if self._in_flight.popleft() == "real":
                admission.real -= 1
            else:
                admission.other -= 1

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._header_bytes = 0  # what follows is the next request's

        def on_response_complete(self) -> None:
            if self._in_flight and self.cycle is not None:
                self._release()
            super().on_response_complete()
            if self.transport.is_closing():
                return
            if not self._in_flight:
                admission.idle[self] = self.loop.time()
            # uvicorn's keep-alive timer stops at the next byte, even a blank line that
            # starts no request: the next request's headers are due within the deadline,
            # counted from this answer (the first byte of the request does not restart it).
            if self._header_bytes is not None:
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
    below it: past the limit the receiver answers 503 (Svix retries), where running out of
    file descriptors would fail real deliveries with "Server disconnected". Requests in
    flight and connections without one are bounded by it (``Admission``): three times it
    fits."""
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
    # Requests in flight, and up to twice as many connections without one (``Admission``),
    # each hold a socket; keep room for the rest (the database's connections, files).
    return max(16, min(wanted, (soft - 64) // 3))


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
    """uvicorn's settings for the receiver: the guarded protocol (with the connection limit),
    keep-alive, no access log, and logging left to ``configure_logging``
    (``log_config=None``)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(
            header_timeout=header_timeout, limit=concurrency_limit(limit_concurrency)
        ),
        log_level="warning",
        log_config=log_config,
        access_log=False,
        lifespan="on",
        limit_concurrency=None,  # the protocol's Admission instead: see there
        ws="none",  # no protocol switch past these guards: the receiver speaks HTTP only
        timeout_keep_alive=keep_alive,
        timeout_graceful_shutdown=10,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        server_header=False,
        proxy_headers=False,  # nothing reads the client address: no middleware per request
    )
