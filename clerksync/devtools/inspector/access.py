"""Who may use the inspector: this machine, or whoever holds its token.

The pages show deliveries' payloads (emails, names) and replay them, so by default the
inspector binds a loopback address only. Loopback is not enough on its own: any web page
the developer opens could post to ``127.0.0.1`` (a forged replay) or point a DNS name at it
(rebinding, to read the pages). So every request must name the inspector's own address in
its ``Host``, and a POST must carry htmx's ``HX-Request`` header (a cross-site form cannot;
a cross-site script cannot without a CORS preflight nobody answers) and, when the browser
sends one, this ``Origin``. Bound to another address, it requires ``--token``: given once
as ``?token=``, kept in an HttpOnly, SameSite=Strict cookie.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from clerksync.errors import UsageError

COOKIE = "clerksync_inspect"

#: every page's headers: no script or style from anywhere else, never framed, never cached
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind without a token (``UsageError``, exit 2), and a token too
    short to be one."""
    if token is not None and len(token) < 16:
        raise UsageError("--token: give at least 16 characters (it guards the pages and replay)")
    if not is_loopback(host) and token is None:
        raise UsageError(
            f"--host {host[:60]!r} is not a loopback address: the inspector shows payloads "
            "and replays them, so bind 127.0.0.1, or give --token TOKEN (then every request "
            "must carry it)"
        )


class Guard:
    """ASGI middleware: the checks of the module docstring, and ``SECURITY_HEADERS``."""

    def __init__(self, app: ASGIApp, *, host: str, port: int, token: str | None) -> None:
        self.app = app
        self.token = token
        names = {host, "localhost", "127.0.0.1", "[::1]"} if is_loopback(host) else None
        #: the Host values accepted without a token (None: any, the token decides)
        self.hosts = None if token else {f"{name}:{port}" for name in names or ()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refused = self._refused(request)
        if refused is not None:
            await refused(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)

    def _refused(self, request: Request) -> Response | None:
        host = request.headers.get("host", "")
        if self.hosts is not None and host not in self.hosts:
            return PlainTextResponse("unknown Host: open the address `inspect` printed", 403)
        if self.token is not None:
            given = request.query_params.get("token")
            if given is not None and _same(given, self.token):
                # Keep it in a cookie, and take it out of the address bar (and history).
                rest = {k: v for k, v in request.query_params.items() if k != "token"}
                url = request.url.path + (f"?{urlencode(rest)}" if rest else "")
                answer = RedirectResponse(url, status_code=303)
                answer.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
                return answer
            if not _same(request.cookies.get(COOKIE, ""), self.token):
                return PlainTextResponse(
                    "this inspector needs its token: open the address `inspect` printed "
                    "(…?token=…)",
                    401,
                )
        if request.method not in ("GET", "HEAD"):
            if request.headers.get("hx-request") != "true":
                return PlainTextResponse("refused: not a request from the inspector's page", 403)
            origin = request.headers.get("origin")
            if origin is not None and origin.split("://", 1)[-1] != host:
                return PlainTextResponse("refused: a request from another site", 403)
        return None


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())
