"""A stateful fake of Clerk's Backend API, served over HTTP on loopback.

The official SDK talks to it exactly as it talks to api.clerk.com: bearer auth
(401 with Clerk's error JSON), users list with limit/offset/order_by/user_id/
email_address filters (a limit over 500 silently returns 10, as Clerk does) and
``starting_after`` cursor paging (created_at orderings only, never with an
offset: 422 otherwise, as Clerk does), count, get, ``GET /instance`` (its id and
environment type), metadata deep merge (null deletes a key), delete.
Organizations: ``GET /organizations`` and the instance-wide
``GET /organization_memberships`` (``{data, total_count}``, limit 1-500,
offset), ``GET /organizations/{id}/memberships``; ``GET /jwks`` (the instance's public
keys: ``tests.support.tokens`` signs session tokens with the private half); an instance without
organizations answers Clerk's 403 ``organization_not_enabled_in_instance``.
``user_offset_limit`` makes a users page past that offset fail with a 504, as
a deep offset on the real API "eventually times out". It enforces an
instance rate limit and Clerk's 10 metadata writes per user per 10 s with 429
and ``Retry-After``, and can inject 5xx answers and latency. Every request is
counted per route so tests can assert batching.
"""

from __future__ import annotations

import collections
import copy
import json
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from clerksync.devtools.payloads import clerk_user

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
        self.path_failures: list[tuple[str, int]] = []
        self.latency = 0.0
        self.metadata_writes: list[tuple[str, dict[str, Any]]] = []
        # Metadata PATCHes being answered now, per user, and (user, start, end) of each one
        # answered: lets a test wait for a write in flight, or check two never overlapped.
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.patch_spans: list[tuple[str, float, float]] = []
        # Called, with the lock held, after a page of the full user list is served (its
        # offset as argument): lets a test change Clerk in the middle of a paging run.
        self.after_page: Callable[[int], None] | None = None
        self._init_orgs()
        from tests.support.tokens import jwks

        self.jwks = jwks()
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

    def fail_path(self, path: str, status: int = 500, count: int = 1) -> None:
        """The next ``count`` requests to ``path`` (``/users``…) answer ``status``."""
        with self.lock:
            self.path_failures.extend([(path, status)] * count)

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
        # a short poll: stop() (shutdown) waits for the serving loop's next poll
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
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
        segments = urlsplit(raw_path).path.removeprefix("/v1").strip("/").split("/")
        if method != "PATCH" or segments[2:] != ["metadata"]:
            return self._answer(method, raw_path, auth, body)
        user_id = segments[1]
        with self.lock:
            self.in_flight[user_id] += 1
        started = time.monotonic()
        try:
            return self._answer(method, raw_path, auth, body)
        finally:
            with self.lock:
                self.in_flight[user_id] -= 1
                self.patch_spans.append((user_id, started, time.monotonic()))

    def _answer(
        self, method: str, raw_path: str, auth: str, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if self.latency:
            time.sleep(self.latency)
        parts = urlsplit(raw_path)
        path = parts.path.removeprefix("/v1").rstrip("/")
        query = parse_qs(parts.query)
        with self.lock:
            failing = next((f for f in self.path_failures if f[0] == path), None)
            if failing is not None:
                self.path_failures.remove(failing)
                return failing[1], _error("internal_error", "injected failure"), {}
        segments = path.strip("/").split("/")
        if segments[0] in ORG_ROOTS:
            return self._handle_orgs(method, segments, query, auth)
        route = (
            f"{method} /{segments[0]}"
            if segments[0] in ("instance", "jwks")
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
            if route == "GET /jwks":
                return 200, copy.deepcopy(self.jwks), {}
            if segments[0] != "users":
                return 404, _error("resource_not_found", "not found"), {}
            if route == "GET /users":
                refused = self._refuse_users_page(query)
                if refused is not None:
                    return refused
                page = self._list(query)
                if self.after_page is not None and "user_id" not in query:
                    page = copy.deepcopy(page)  # the hook may change what it lists
                    self.after_page(self._page_start(query))
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
        cursor = query.get("starting_after", [""])[0]
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
        if cursor:  # checked by _refuse_users_page: a created_at order, no offset, known id
            position = self._position(users, field, reverse).get(cursor)
            offset = len(users) if position is None else position + 1
        # Serialised right away by the handler, under the lock: no copy needed.
        return users[offset : offset + limit]

    # -- cursor paging and deep offsets (users) -------------------------------------------------

    def _page_start(self, query: dict[str, list[str]]) -> int:
        """Where the page just served starts in the full list (its offset, or the cursor's
        position + 1): what ``after_page`` hooks are told."""
        cursor = query.get("starting_after", [""])[0]
        if not cursor:
            return int(query.get("offset", ["0"])[0])
        return self._positions[1].get(cursor, -1) + 1

    def _position(self, users: list[dict[str, Any]], field: str, reverse: bool) -> dict[str, int]:
        """Id -> index in ``users`` (the sorted list just served), cached like the sort."""
        key = ("position", field, reverse, self.version, len(self.users), len(users))
        if self._positions[0] != key:
            self._positions = (key, {u["id"]: i for i, u in enumerate(users)})
        return self._positions[1]

    def _refuse_users_page(
        self, query: dict[str, list[str]]
    ) -> tuple[int, Any, dict[str, str]] | None:
        """Clerk's answers to a users page it will not serve: ``starting_after`` with a
        non-zero offset or an order other than created_at (422), a cursor id it does not
        know (422), and (when ``user_offset_limit`` is set) an offset past it (504, after
        ``deep_offset_delay`` seconds), as a deep offset on the real API times out."""
        offset = int(query.get("offset", ["0"])[0])
        cursor = query.get("starting_after", [""])[0]
        order = query.get("order_by", ["-created_at"])[0]
        if cursor:
            if offset:
                return (
                    422,
                    _error(
                        "form_param_invalid",
                        "starting_after cannot be combined with a non-zero offset",
                    ),
                    {},
                )
            if order.lstrip("+-") != "created_at":
                return (
                    422,
                    _error("form_param_invalid", "starting_after requires ordering by created_at"),
                    {},
                )
            if cursor not in self.users:
                return 422, _error("form_param_invalid", "starting_after names no user"), {}
        if self.user_offset_limit is not None and offset > self.user_offset_limit:
            self.deep_offset_refusals += 1
            if self.deep_offset_delay:
                self.lock.release()  # let other requests through while this one "runs"
                try:
                    time.sleep(self.deep_offset_delay)
                finally:
                    self.lock.acquire()
            return 504, _error("request_timeout", "the request timed out"), {}
        return None

    # -- organizations and memberships ----------------------------------------------------------

    def _init_orgs(self) -> None:
        self.orgs: dict[str, dict[str, Any]] = {}
        self.memberships: dict[str, dict[str, Any]] = {}
        self.orgs_enabled = True
        #: GET /users with an offset past this answers 504 (None: no limit)
        self.user_offset_limit: int | None = None
        self.deep_offset_delay = 0.0
        self.deep_offset_refusals = 0
        #: membership ids the instance-wide list leaves out (Clerk still has them)
        self.skipped_by_paging: set[str] = set()
        self._positions: tuple[Any, dict[str, int]] = ((), {})
        self._org_sorted: dict[tuple[Any, ...], list[dict[str, Any]]] = {}

    def add_org(self, **kwargs: Any) -> dict[str, Any]:
        org = clerk_organization(**kwargs)
        with self.lock:
            self.orgs[org["id"]] = org
            self.version += 1
        return copy.deepcopy(org)

    def add_membership(self, org_id: str, user_id: str, **kwargs: Any) -> dict[str, Any]:
        """A membership of a known org (embedded as Clerk embeds it); the user need not exist."""
        with self.lock:
            org = self.orgs[org_id]
            member = clerk_membership(org=org, user_id=user_id, **kwargs)
            self.memberships[member["id"]] = member
            org["members_count"] = org.get("members_count", 0) + 1
            self.version += 1
        return copy.deepcopy(member)

    def remove_org(self, org_id: str) -> None:
        """Delete an organization and, as Clerk does, its memberships."""
        with self.lock:
            del self.orgs[org_id]
            for mem_id in [
                m for m, v in self.memberships.items() if v["organization"]["id"] == org_id
            ]:
                del self.memberships[mem_id]
            self.version += 1

    def _handle_orgs(
        self, method: str, segments: list[str], query: dict[str, list[str]], auth: str
    ) -> tuple[int, Any, dict[str, str]]:
        if segments[0] == "organization_memberships":
            route = f"{method} /organization_memberships"
        elif segments[2:] == ["memberships"]:
            route = f"{method} /organizations/{{id}}/memberships"
        else:
            route = f"{method} /organizations" + ("/{id}" if len(segments) > 1 else "")
        with self.lock:
            self.counts[route] += 1
            if auth != f"Bearer {self.secret_key}":
                return 401, _error("authentication_invalid", "Invalid authentication"), {}
            if self.instance_limit is not None:
                wait = self._limited(self._instance_hits, self.instance_limit, time.monotonic())
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
            if not self.orgs_enabled:
                return 403, ORGS_DISABLED, {}
            if method != "GET":
                return 405, _error("method_not_allowed", "method not allowed"), {}
            try:
                limit = int(query.get("limit", ["10"])[0])
                offset = int(query.get("offset", ["0"])[0])
            except ValueError:
                return 422, _error("form_param_format_invalid", "limit/offset must be integers"), {}
            if not 1 <= limit <= 500 or offset < 0:
                return (
                    422,
                    _error("form_param_value_invalid", "limit must be 1-500, offset >= 0"),
                    {},
                )
            order = query.get("order_by", ["-created_at"])[0]
            if order.lstrip("+-") != "created_at":
                return (
                    422,
                    _error("form_param_value_invalid", "the fake orders by created_at only"),
                    {},
                )
            if route == "GET /organizations":
                ids = query.get("organization_id")
                if ids:
                    wanted = {i.lstrip("+") for i in ids}
                    items = [self.orgs[i] for i in wanted if i in self.orgs]
                    items.sort(key=lambda o: o["created_at"], reverse=order.startswith("-"))
                else:
                    items = self._sorted_objects("orgs", self.orgs, order)
            elif route == "GET /organization_memberships":
                items = self._sorted_objects("memberships", self.memberships, order)
                if self.skipped_by_paging:  # as if an earlier deletion shifted the offsets
                    items = [m for m in items if m["id"] not in self.skipped_by_paging]
            elif route == "GET /organizations/{id}/memberships":
                if segments[1] not in self.orgs:
                    return 404, _error("resource_not_found", "Organization not found"), {}
                users = set(query.get("user_id", []))
                items = [
                    m
                    for m in self._sorted_objects("memberships", self.memberships, order)
                    if m["organization"]["id"] == segments[1]
                    and (not users or m["public_user_data"]["user_id"] in users)
                ]
            else:
                org = self.orgs.get(segments[1])
                if org is None:
                    org = next((o for o in self.orgs.values() if o["slug"] == segments[1]), None)
                if org is None:
                    return 404, _error("resource_not_found", "Organization not found"), {}
                return 200, org, {}
            # Serialised by the handler under the lock: no copy needed.
            return 200, {"data": items[offset : offset + limit], "total_count": len(items)}, {}

    def _sorted_objects(
        self, name: str, objects: dict[str, dict[str, Any]], order: str
    ) -> list[dict[str, Any]]:
        """``objects`` by created_at (stable: ties keep insertion order), sorted once per change."""
        key = (name, order, self.version, len(objects))
        if key not in self._org_sorted:
            self._org_sorted = {k: v for k, v in self._org_sorted.items() if k[0] != name}
            self._org_sorted[key] = sorted(
                objects.values(), key=lambda o: o["created_at"], reverse=order.startswith("-")
            )
        return self._org_sorted[key]


ORG_ROOTS = ("organizations", "organization_memberships")

#: what Clerk answers an organizations call on an instance without the feature
ORGS_DISABLED = {
    "errors": [
        {
            "code": "organization_not_enabled_in_instance",
            "message": "access denied",
            "long_message": "The organizations feature is not enabled for this instance. "
            "You can enable it at https://dashboard.clerk.com.",
            "meta": {},
        }
    ]
}


def clerk_organization(
    *,
    org_id: str | None = None,
    name: str = "Acme Corp",
    slug: str | None = None,
    created_at: int | None = None,
    updated_at: int | None = None,
    image_url: str | None = None,
    created_by: str | None = None,
) -> dict[str, Any]:
    """A Backend API organization object, shaped like Clerk's documented example."""
    now = int(time.time() * 1000)
    org_id = org_id or "org_" + secrets.token_hex(13)
    return {
        "object": "organization",
        "id": org_id,
        "name": name,
        "slug": slug if slug is not None else org_id.lower().replace("_", "-"),
        "image_url": image_url if image_url is not None else f"https://img.clerk.com/{org_id}",
        "has_image": False,
        "members_count": 0,
        "missing_member_with_elevated_permissions": False,
        "pending_invitations_count": 0,
        "max_allowed_memberships": 0,
        "admin_delete_enabled": True,
        "public_metadata": {},
        "private_metadata": {},
        "created_by": created_by,
        "created_at": created_at or now,
        "updated_at": updated_at or created_at or now,
    }


def clerk_membership(
    *,
    org: dict[str, Any],
    user_id: str,
    role: str = "org:member",
    membership_id: str | None = None,
    created_at: int | None = None,
    updated_at: int | None = None,
    identifier: str | None = None,
) -> dict[str, Any]:
    """A Backend API organization membership, with the organization and ``public_user_data``
    embedded, as Clerk sends it (list answers and webhooks alike)."""
    now = int(time.time() * 1000)
    return {
        "object": "organization_membership",
        "id": membership_id or "orgmem_" + secrets.token_hex(13),
        "role": role,
        "role_name": role.removeprefix("org:").title(),
        "permissions": [],
        "public_metadata": {},
        "private_metadata": {},
        "organization": org,
        "public_user_data": {
            "user_id": user_id,
            "first_name": None,
            "last_name": None,
            "image_url": f"https://img.clerk.com/{user_id}",
            "has_image": False,
            "identifier": identifier or f"{user_id}@example.com",
            "profile_image_url": None,
        },
        "created_at": created_at or now,
        "updated_at": updated_at or created_at or now,
    }
