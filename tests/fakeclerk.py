"""A stateful fake of Clerk's Backend API, served over HTTP on loopback.

The official SDK talks to it exactly as it talks to api.clerk.com: bearer auth
(401 with Clerk's error JSON), users list with limit/offset/order_by/user_id/
email_address filters (a limit over 500 silently returns 10, as Clerk does),
count, get, ``GET /instance`` (its id and environment type), metadata deep
merge (null deletes a key), delete. It enforces an instance rate limit and
Clerk's 10 metadata writes per user per 10 s with 429 and ``Retry-After``, and
can inject 5xx answers and latency. Every request is counted per route so tests
can assert batching.
"""

from __future__ import annotations

import collections
import copy
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from clerksync.payloads import clerk_user

SECRET_KEY = "sk_test_" + "f4ke" * 8


def deep_merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message, "long_message": message}]}


class FakeClerk:
    """State plus knobs; ``url`` is the base to hand to ``CLERK_API_URL``."""

    def __init__(
        self,
        *,
        secret_key: str = SECRET_KEY,
        instance_limit: int | None = None,
        window: float = 10.0,
        per_user_metadata_limit: int = 10,
        instance_id: str = "ins_2fakeclerk0000000000000",
        environment_type: str = "development",
    ) -> None:
        self.secret_key = secret_key
        self.instance_id = instance_id
        self.environment_type = environment_type
        self.users: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.version = 0  # bumped by every change that can reorder users
        self._sorted: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self.instance_limit = instance_limit
        self.window = window
        self.per_user_metadata_limit = per_user_metadata_limit
        self._instance_hits: collections.deque[float] = collections.deque()
        self._user_hits: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )
        self.counts: collections.Counter[str] = collections.Counter()
        self.rate_limited = 0
        self.fail_queue: list[int] = []
        self.latency = 0.0
        self.metadata_writes: list[tuple[str, dict[str, Any]]] = []
        # Called, with the lock held, after a page of the full user list is served (its
        # offset as argument): lets a test change Clerk in the middle of a paging run.
        self.after_page: Callable[[int], None] | None = None
        self._server: ThreadingHTTPServer | None = None

    # -- state helpers for tests -------------------------------------------------------------

    def add_user(self, **kwargs: Any) -> dict[str, Any]:
        user = clerk_user(**kwargs)
        with self.lock:
            self.users[user["id"]] = user
            self.version += 1
        return copy.deepcopy(user)

    def add_raw(self, user: dict[str, Any]) -> None:
        with self.lock:
            self.users[user["id"]] = copy.deepcopy(user)
            self.version += 1

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        with self.lock:
            self.fail_queue.extend([status] * count)

    def total_requests(self) -> int:
        return sum(self.counts.values())

    # -- serving -----------------------------------------------------------------------------

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: without this, Nagle's algorithm
            # and delayed ACKs add ~40 ms to every keep-alive request
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload, headers = fake.handle(
                    self.command, self.path, self.headers.get("authorization", ""), body
                )
                with fake.lock:  # the payload may reference live users
                    data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_DELETE = do_POST = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    # -- the API -----------------------------------------------------------------------------

    def _limited(self, hits: collections.deque[float], limit: int, now: float) -> float | None:
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= limit:
            return hits[0] + self.window - now
        hits.append(now)
        return None

    def handle(
        self, method: str, raw_path: str, auth: str, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if self.latency:
            time.sleep(self.latency)
        parts = urlsplit(raw_path)
        path = parts.path.removeprefix("/v1").rstrip("/")
        query = parse_qs(parts.query)
        segments = path.strip("/").split("/")
        route = (
            f"{method} /instance"
            if segments[0] == "instance"
            else f"{method} /users"
            + (
                "/count"
                if segments[1:] == ["count"]
                else "/{id}/metadata"
                if segments[2:] == ["metadata"]
                else "/{id}"
                if len(segments) > 1
                else ""
            )
        )
        with self.lock:
            self.counts[route] += 1
            if auth != f"Bearer {self.secret_key}":
                return 401, _error("authentication_invalid", "Invalid authentication"), {}
            now = time.monotonic()
            if self.instance_limit is not None:
                wait = self._limited(self._instance_hits, self.instance_limit, now)
                if wait is not None:
                    self.rate_limited += 1
                    return (
                        429,
                        _error("too_many_requests", "Too many requests"),
                        {"retry-after": str(max(1, int(wait + 0.999)))},
                    )
            if self.fail_queue:
                status = self.fail_queue.pop(0)
                return status, _error("internal_error", "injected failure"), {}
            if route == "GET /instance":
                return (
                    200,
                    {
                        "object": "instance",
                        "id": self.instance_id,
                        "environment_type": self.environment_type,
                    },
                    {},
                )
            if segments[0] != "users":
                return 404, _error("resource_not_found", "not found"), {}
            if route == "GET /users":
                page = self._list(query)
                if self.after_page is not None and "user_id" not in query:
                    page = copy.deepcopy(page)  # the hook may change what it lists
                    self.after_page(int(query.get("offset", ["0"])[0]))
                return 200, page, {}
            if route == "GET /users/count":
                return 200, {"object": "total_count", "total_count": len(self.users)}, {}
            user = self.users.get(segments[1]) if len(segments) > 1 else None
            if user is None:
                return 404, _error("resource_not_found", "User not found"), {}
            if route == "GET /users/{id}":
                return 200, copy.deepcopy(user), {}
            if route == "DELETE /users/{id}":
                del self.users[user["id"]]
                self.version += 1
                return 200, {"id": user["id"], "object": "user", "deleted": True}, {}
            if route == "PATCH /users/{id}/metadata":
                wait = self._limited(self._user_hits[user["id"]], self.per_user_metadata_limit, now)
                if wait is not None:
                    self.rate_limited += 1
                    return (
                        429,
                        _error("too_many_requests", "Too many requests"),
                        {"retry-after": str(max(1, int(wait + 0.999)))},
                    )
                patch = json.loads(body or b"{}")
                public = patch.get("public_metadata")
                if public:
                    deep_merge(user["public_metadata"], public)
                    self.metadata_writes.append((user["id"], public))
                user["updated_at"] = max(int(time.time() * 1000), user["updated_at"] + 1)
                self.version += 1
                return 200, copy.deepcopy(user), {}
            return 405, _error("method_not_allowed", "method not allowed"), {}

    def _list(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        limit = int(query.get("limit", ["10"])[0])
        if limit > 500 or limit < 1:
            limit = 10
        offset = int(query.get("offset", ["0"])[0])
        ids = query.get("user_id")
        if ids:
            wanted = set(ids)
            users = [self.users[i] for i in wanted if i in self.users]
        else:
            users = list(self.users.values())
        emails = query.get("email_address")
        if emails:
            wanted = {e.lower() for e in emails}
            users = [
                u
                for u in users
                if any(e["email_address"].lower() in wanted for e in u["email_addresses"])
            ]
        order = query.get("order_by", ["-created_at"])[0]
        field = order.lstrip("+-")
        if field in ("created_at", "updated_at"):
            reverse = order.startswith("-")
            if ids or emails:
                users = sorted(users, key=lambda u: u[field], reverse=reverse)
            else:  # the whole list: sort once per change, not once per page
                key = (field, reverse, self.version, len(self.users))
                if key not in self._sorted:
                    # stable: ties broken by insertion order
                    self._sorted = {key: sorted(users, key=lambda u: u[field], reverse=reverse)}
                users = self._sorted[key]
        # Serialised right away by the handler, under the lock: no copy needed.
        return users[offset : offset + limit]
