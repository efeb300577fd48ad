"""What the receiver refuses before it verifies anything: a malformed ``svix-id``, svix
headers that cannot verify, and bodies too large, too slow or past the memory budget every
request shares. The answers are the ones ``verify`` would give, without reading (up to
1 MiB of) body first."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from clerksync.clerk.webhooks import MAX_BODY

#: an ASGI ``receive``
Receive = Callable[[], Awaitable[Mapping[str, Any]]]

BODY_TIMEOUT = 10.0  # seconds for the body, once the headers are in


BODY_BYTES_IN_FLIGHT = 64 * 1024 * 1024  # large bodies being read, all requests together


SMALL_BODY = 64 * 1024  # bodies up to this size are outside that budget


TIMESTAMP_TOLERANCE = 5 * 60  # svix's own: a signature older or newer than this is refused


MAX_SIGNATURE_HEADER = 4096  # a few v1,<base64> signatures (key rotation) fit many times


SVIX_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")


UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_.:\-]")


def signature_headers_problem(headers: Any) -> str | None:
    """Why the svix headers alone fail verification, or None: missing, a timestamp outside
    svix's 5 minutes, a signature header too long or without a ``v1,`` signature. The
    same answers ``verify`` gives, but without reading (up to 1 MiB of) body first."""
    wanted = {k: headers.get(k, "") for k in ("svix-id", "svix-timestamp", "svix-signature")}
    if not all(wanted.values()):
        return "missing header(s): " + ", ".join(k for k, v in wanted.items() if not v)
    signature = wanted["svix-signature"]
    if len(signature) > MAX_SIGNATURE_HEADER:
        return "svix-signature header over 4 KiB"
    if "v1," not in signature:
        return "no v1 signature in svix-signature"
    stamp = wanted["svix-timestamp"]
    if not stamp.isdigit() or len(stamp) > 12:
        return "invalid svix-timestamp"
    if abs(time.time() - int(stamp)) > TIMESTAMP_TOLERANCE:
        return "message timestamp too old or too new"
    return None


def shown_id(raw: str | None) -> str | None:
    """A sender-controlled ``svix-id`` as it may appear in logs and records: short, plain."""
    if raw is None or SVIX_ID.fullmatch(raw):
        return raw
    cut = UNSAFE_ID_CHARS.sub("?", raw[:40])
    return cut + "…" if len(raw) > 40 else cut


#: headers a delivery's record keeps (``events show``, the inspector): what says how it came
RECORDED_HEADERS = (
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "content-type",
    "content-length",
    "user-agent",
)
MAX_HEADER_SHOWN = 200


def recorded_headers(headers: Any) -> dict[str, str]:
    """The delivery's ``RECORDED_HEADERS`` as kept in its record: each cut to 200 plain
    characters, the signatures masked (``v1,g0hM…``: enough to tell two apart)."""
    kept: dict[str, str] = {}
    for name in RECORDED_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        value = UNSAFE_HEADER_CHARS.sub("?", value[:MAX_HEADER_SHOWN])
        if name == "svix-signature":
            value = " ".join(mask_signature(s) for s in value.split()[:8])
        kept[name] = value
    return kept


UNSAFE_HEADER_CHARS = re.compile(r"[^\x20-\x7e]")


def mask_signature(signature: str) -> str:
    version, _, mac = signature.partition(",")
    return f"{version[:8]},{mac[:4]}…" if mac else "…"


class Refused(Exception):
    """A request answered at once: ``status`` and the error for the log and the answer,
    ``reason`` the metrics' word for it."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error

    @property
    def reason(self) -> str:
        return {413: "too_large", 408: "timeout", 503: "busy"}.get(self.status, "bad_request")


class BodyReader:
    """Reads request bodies within ``BODY_TIMEOUT`` and ``MAX_BODY``, bodies over
    ``SMALL_BODY`` sharing ``BODY_BYTES_IN_FLIGHT`` (one event loop: no lock)."""

    def __init__(self) -> None:
        self.in_flight = 0  # bytes of large bodies being read now

    async def read(self, headers: Mapping[str, str], receive: Receive) -> bytes:
        """The body (from ASGI ``receive``), or ``Refused``: a bad or too large
        content-length (400, 413), the budget spent (503: Svix retries), a body too slow
        (408) or cut short (400)."""
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit() or len(declared) > 12:
                raise Refused(400, "bad content-length")
            if int(declared) > MAX_BODY:
                raise Refused(413, "body over 1 MiB")
        # Memory for large bodies is shared: past the budget, answer at once (Svix
        # retries). A Clerk event is a few KiB: bodies up to SMALL_BODY never wait on it.
        reserved = int(declared) if declared is not None else 0
        if reserved <= SMALL_BODY:
            reserved = 0
        elif self.in_flight + reserved > BODY_BYTES_IN_FLIGHT:
            raise Refused(503, "busy: too many large request bodies in flight")
        self.in_flight += reserved
        try:
            return await self._read(receive, reserved)
        except _BodyTooLarge:
            raise Refused(413, "body over 1 MiB") from None
        except _Busy:
            raise Refused(503, "busy: too many request bodies in flight") from None
        except TimeoutError:
            raise Refused(408, f"body not received within {BODY_TIMEOUT:.0f} s") from None
        except _Disconnected:
            raise Refused(400, "client disconnected before the body was complete") from None
        finally:
            self.in_flight -= reserved

    async def _read(self, receive: Receive, reserved: int) -> bytes:
        """The body, within ``BODY_TIMEOUT`` and ``MAX_BODY``; bytes past ``reserved`` (no
        content-length, or a lying one) are taken from the in-flight budget as they come."""
        body = bytearray()
        extra = 0
        try:
            async with _deadline(BODY_TIMEOUT):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        raise _Disconnected
                    body += message.get("body", b"")
                    if len(body) > MAX_BODY:
                        raise _BodyTooLarge
                    if len(body) > max(reserved, SMALL_BODY) + extra:
                        grow = len(body) - max(reserved, SMALL_BODY) - extra
                        if self.in_flight + grow > BODY_BYTES_IN_FLIGHT:
                            raise _Busy
                        self.in_flight += grow
                        extra += grow
                    if not message.get("more_body", False):
                        break
        finally:
            self.in_flight -= extra
        return bytes(body)


if sys.version_info >= (3, 11):
    _deadline = asyncio.timeout
else:  # pragma: no cover (3.10: anyio's, a little dearer)
    import contextlib

    @contextlib.asynccontextmanager
    async def _deadline(seconds: float) -> Any:
        from anyio import fail_after

        with fail_after(seconds):
            yield


class _BodyTooLarge(Exception):
    pass


class _Busy(Exception):
    pass


class _Disconnected(Exception):
    pass
