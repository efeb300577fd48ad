"""ClerkGateway: the few Backend API calls clerksync makes, over the official SDK.

Why a gateway and not the SDK directly: the SDK retries 5xx for up to an hour
by default and never retries 429, its models reject some real users (SAML
accounts among others), and it builds a pydantic model class on every call.
Here every call has a bounded retry budget, every failure becomes a
``ClerkApiError`` carrying the status and ``Retry-After``, and the calls bulk
jobs make by the thousand (user lists, metadata merges) go as raw JSON through
the SDK's own HTTP client, URL and key: no user is lost to a record the models
reject, and a call costs its request, not a validation pass several times longer.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from clerksync.clerk.answers import FeatureDisabled, api_error, transport_errors
from clerksync.clerk.keys import DEFAULT_API_URL, instance_kind
from clerksync.clerk.routes import route_template
from clerksync.clerk.tls import tls_context
from clerksync.errors import ClerkApiError, UserNotFound

PAGE_SIZE = 500  # Clerk's maximum; a larger limit silently returns 10
#: seconds a connection to the Backend API may take: Clerk answers within it from anywhere
CONNECT_TIMEOUT = 2.0
ID_BATCH = 100  # user_id filters per request
#: what an instance-wide list is asked besides its page, unless it says otherwise
DEFAULT_ORDER = {"order_by": "+created_at"}
#: the answers meaning a list's feature is off: (status, Clerk's error code or None for any)
Off = tuple[tuple[int, str | None], ...]

#: requests per 10 s that Clerk allows, by instance kind
INSTANCE_LIMITS = {"test": 100, "live": 1000}


#: told of every request: its route template and Clerk's status (None: no answer)
RequestObserver = Callable[[str, int | None], None]


#: share of the instance limit clerksync takes by default: the rest is headroom for the
#: app's own Backend API calls and for the skew between our clock and Clerk's window
DEFAULT_SHARE = 0.95


def default_rate(secret_key: str | None) -> float:
    """Requests per second that stay under the key's instance limit (``DEFAULT_SHARE`` of it).

    ``ratelimit.instance_pacer`` sends at most 10 s of this rate in any trailing 10 s:
    95% of the limit.
    """
    per_10s = INSTANCE_LIMITS.get(instance_kind(secret_key) or "test", 100)
    return per_10s / 10 * DEFAULT_SHARE


class ClerkGateway:
    """Backend API access. ``retry_budget_ms`` caps the SDK's own 5xx retries;
    ``on_request`` is told of every request (route template, status), for the receiver's
    metrics: passed in, so this layer knows nothing of who counts.

    ``fail_fast``: until Clerk has answered once, a connection that cannot be made (refused,
    a host that does not resolve, ``CONNECT_TIMEOUT`` without an answer) is a configuration
    error naming the URL, not a failure to retry: a bulk job with a wrong ``CLERK_API_URL``
    stops at once instead of retrying silently. The receiver's workers keep retrying (Clerk
    may come back)."""

    def __init__(
        self,
        secret_key: str,
        *,
        api_url: str = DEFAULT_API_URL,
        timeout_ms: int = 10_000,
        retry_budget_ms: int = 0,
        fail_fast: bool = False,
        on_request: RequestObserver | None = None,
    ) -> None:
        import httpx
        from clerk_backend_api import Clerk
        from clerk_backend_api.utils import BackoffStrategy, RetryConfig

        retry = (
            RetryConfig("backoff", BackoffStrategy(250, 2000, 2.0, retry_budget_ms), True)
            if retry_budget_ms
            else None
        )
        self.secret_key = secret_key
        self.api_url = api_url.rstrip("/")
        self.timeout_ms = timeout_ms
        # The SDK's clients as it makes them, but sharing the process's TLS context (``tls``):
        # the SDK would load the CA bundle for each. Ours to close: the sync one (``close``,
        # or when the gateway goes); the async one is never used and opens nothing.
        client = httpx.Client(follow_redirects=True, verify=tls_context())
        weakref.finalize(self, client.close)
        self.sdk = Clerk(
            bearer_auth=secret_key,
            server_url=api_url.rstrip("/"),
            retry_config=retry,
            timeout_ms=timeout_ms,
            client=client,
            async_client=httpx.AsyncClient(follow_redirects=True, verify=tls_context()),
        )
        self.requests = 0
        self._requests_lock = threading.Lock()
        self.fail_fast = fail_fast
        self._answered = False  # has Clerk answered anything yet?
        self.on_request = on_request

    def close(self) -> None:
        """Close the SDK's HTTP client (its pooled connections)."""
        client = self.sdk.sdk_configuration.client
        if client is not None:
            client.close()

    def _count(self) -> None:
        """Requests made (the benchmarks' figure); reconcile calls from two threads."""
        with self._requests_lock:
            self.requests += 1

    def _observe(self, route: str, status: int | None) -> None:
        if self.on_request is not None:
            with contextlib.suppress(Exception):  # counting must never fail a request
                self.on_request(route, status)

    def _call(self, route: str, fn: Any, **kwargs: Any) -> Any:
        from clerk_backend_api import models

        self._count()
        status: int | None = None
        try:
            with self._transport_errors():
                answer = fn(**kwargs)
            self._answered = True
            status = 200
            return answer
        except models.ResponseValidationError:
            status = 200
            raise ClerkApiError("Clerk answered something the SDK's models reject") from None
        except models.ClerkBaseError as exc:
            self._answered = True
            status = exc.status_code
            raise api_error(exc.status_code, exc.headers, exc.body) from None
        finally:
            self._observe(route, status)

    def _transport_errors(self) -> contextlib.AbstractContextManager[None]:
        """httpx's failures as ``ClerkApiError``; with ``fail_fast``, a connection refused
        (or never made) before Clerk ever answered is ``unreachable`` and names the URL."""
        return transport_errors(self.api_url if self.fail_fast and not self._answered else None)

    def count_users(self) -> int:
        result = self._call("GET /users/count", self.sdk.users.count)
        return int(result.total_count)

    def get_instance(self) -> dict[str, Any]:
        """``GET /instance``: ``{id: "ins_…", environment_type}``, which instance the key is for."""
        instance = self._send("GET", "/instance")
        if not isinstance(instance, dict) or not isinstance(instance.get("id"), str):
            raise ClerkApiError("Clerk answered GET /instance without an instance id")
        return instance

    def get_user(self, user_id: str) -> dict[str, Any]:
        """``GET /users/{id}``: one user as raw JSON (the models reject some real users);
        ``UserNotFound`` when Clerk does not know the id (404)."""
        from urllib.parse import quote

        try:
            user = self._send("GET", f"/users/{quote(user_id, safe='')}")
        except ClerkApiError as exc:
            if exc.status == 404:
                raise UserNotFound(f"Clerk has no user {user_id}") from None
            raise
        if not isinstance(user, dict):
            raise ClerkApiError("Clerk answered GET /users/{id} with something not a user")
        return user

    def get_jwks(self) -> dict[str, Any]:
        """``GET /jwks``: the instance's public keys (session tokens are signed with them)."""
        jwks = self._send("GET", "/jwks")
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise ClerkApiError("Clerk answered GET /jwks without a list of keys")
        return jwks

    def users_after(self, cursor: str | None, *, limit: int = PAGE_SIZE) -> list[dict[str, Any]]:
        """The page of users that follows ``cursor`` (a user id; None: the first page), oldest
        first, as plain dicts.

        Cursor paging (``starting_after``) costs Clerk the same at any depth, where a
        large ``offset`` "gets progressively slower and eventually times out"; it needs
        the ``created_at`` ordering and no offset. Ascending, so a user who signs up
        during the walk lands after the cursor and is still seen.
        """
        params: dict[str, Any] = {"limit": limit, "order_by": "+created_at"}
        if cursor is not None:
            params["starting_after"] = cursor
        return self._list(params)

    def list_at(
        self,
        path: str,
        *,
        offset: int = 0,
        limit: int = PAGE_SIZE,
        params: Mapping[str, str] | None = None,
        off: Off = (),
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of an instance-wide ``{data, total_count}`` list (``/organizations``,
        ``/organization_memberships``…) and Clerk's total count: a backfill costs pages, never
        a request per parent. ``params``: the list's own query (default: oldest first).
        ``FeatureDisabled`` when Clerk answers one of ``off`` (status, code or None for any):
        the list's feature is not enabled on the instance (``OrganizationsDisabled`` for
        Clerk's organizations code, whatever the list)."""
        query = {**(DEFAULT_ORDER if params is None else params), "limit": limit, "offset": offset}
        return self._data_page(path, query, off)

    def find_ids(self, path: str, param: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        """The objects of a list whose ids are among ``ids`` (at most ``ID_BATCH``), filtered
        by the list's id parameter (``user_id``, ``organization_id``); unknown ids are
        absent. Lists answer a bare list (users) or a ``{data, total_count}`` page."""
        if len(ids) > ID_BATCH:
            raise ValueError(f"at most {ID_BATCH} ids per request")
        return self._items("GET", path, {param: list(ids), "limit": ID_BATCH})

    def find_under(
        self, path: str, param: str | None, values: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The objects of one parent's list (``/organizations/{id}/memberships``) whose
        ``param`` is among ``values`` (at most ``ID_BATCH``), or (no ``param``) the first
        ``PAGE_SIZE`` of them; a parent Clerk no longer has answers an empty list."""
        if len(values) > ID_BATCH:
            raise ValueError(f"at most {ID_BATCH} ids per request")
        query: dict[str, Any] = {"limit": PAGE_SIZE}
        if param is not None:
            query = {param: list(values), "limit": ID_BATCH}
        try:
            return self._items("GET", path, query)
        except ClerkApiError as exc:
            if exc.status == 404:
                return []
            raise

    def _items(self, method: str, path: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        found = self._send(method, path, params=params)
        if isinstance(found, dict) and isinstance(found.get("data"), list):
            found = found["data"]
        if not isinstance(found, list):
            raise ClerkApiError(f"Clerk answered GET {path} with something not a list")
        return [item for item in found if isinstance(item, dict)]

    def count(self, path: str, *, params: Mapping[str, str] | None = None, off: Off = ()) -> int:
        """The ``total_count`` of an instance-wide list (one request): ``/organizations``…;
        ``FeatureDisabled`` as ``list_at``."""
        query = {**(DEFAULT_ORDER if params is None else params), "limit": 1}
        return self._data_page(path, query, off)[1]

    def find_one(self, path: str, key: str | None = None) -> list[dict[str, Any]]:
        """What ``GET path`` (a query string allowed) answers, as a list of objects: the
        object itself, a page's ``data``, or the list under ``key`` of the object (a payer's
        subscription's ``subscription_items``); none when Clerk answers 404."""
        try:
            found = self._send("GET", path)
        except ClerkApiError as exc:
            if exc.status == 404:
                return []
            raise
        if isinstance(found, dict) and key is not None:
            found = found.get(key)
        elif isinstance(found, dict) and isinstance(found.get("data"), list):
            found = found["data"]
        if isinstance(found, dict):
            return [found]
        return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []

    def _data_page(
        self, path: str, params: Mapping[str, Any], off: Off = ()
    ) -> tuple[list[dict[str, Any]], int]:
        """A ``{data, total_count}`` list as raw JSON (see ``_send``)."""
        try:
            page = self._send("GET", path, params=params)
        except ClerkApiError as exc:
            if isinstance(exc, FeatureDisabled) or not any(
                exc.status == status and code in (None, exc.code) for status, code in off
            ):
                raise
            raise FeatureDisabled(str(exc), status=exc.status, code=exc.code) from None
        data = page.get("data") if isinstance(page, dict) else None
        total = page.get("total_count") if isinstance(page, dict) else None
        if not isinstance(data, list) or isinstance(total, bool) or not isinstance(total, int):
            raise ClerkApiError(f"Clerk answered GET {path} with something not a list page")
        return [item for item in data if isinstance(item, dict)], total

    def get_many(self, user_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Users by id, at most ``ID_BATCH`` per request; ids Clerk does not know are absent."""
        if len(user_ids) > ID_BATCH:
            raise ValueError(f"at most {ID_BATCH} ids per request")
        return self._list({"user_id": list(user_ids), "limit": ID_BATCH})

    def _list(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """GET /users as raw JSON (see ``_send``): the SDK's models also reject some real
        users (SAML accounts among others), which would cost a whole page."""
        page = self._send("GET", "/users", params=params)
        if not isinstance(page, list):
            raise ClerkApiError("Clerk answered a user list that is not a list")
        return [u for u in page if isinstance(u, dict)]

    def update_metadata(self, user_id: str, public_metadata: Mapping[str, Any]) -> dict[str, Any]:
        """Deep-merge into ``publicMetadata`` (other keys survive); returns Clerk's new copy."""
        from urllib.parse import quote

        user = self._send(
            "PATCH",
            f"/users/{quote(user_id, safe='')}/metadata",
            body={"public_metadata": dict(public_metadata)},
        )
        copy = user.get("public_metadata") if isinstance(user, dict) else None
        return dict(copy) if isinstance(copy, dict) else {}

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """One Backend API request through the SDK's own HTTP client, URL and bearer key;
        the answer as plain JSON.

        Deliberately not the SDK's methods for the calls a bulk job makes thousands
        of times: clerk-backend-api 7 builds a pydantic model class on every call, to
        serialise the request and again to parse the answer (``create_model`` in
        ``utils/serializers.py``) — about 7 ms of CPU per call here, against under 2 ms
        for the request itself, which held sync-metadata well under the rate limit
        on two cores. Errors map exactly as for SDK calls.
        """
        client = self.sdk.sdk_configuration.client
        assert client is not None
        import httpx

        self._count()
        route = route_template(method, path)
        try:
            with self._transport_errors():
                request = client.build_request(
                    method,
                    f"{self.api_url}{path}",
                    params=params,
                    json=body,
                    headers={"authorization": f"Bearer {self.secret_key}"},
                    timeout=httpx.Timeout(self.timeout_ms / 1000, connect=CONNECT_TIMEOUT),
                )
                response = client.send(request)
        except ClerkApiError:
            self._observe(route, None)
            raise
        self._answered = True
        self._observe(route, response.status_code)
        if response.status_code != 200:
            raise api_error(response.status_code, response.headers, response.text)
        try:
            return response.json()
        except ValueError:
            raise ClerkApiError(
                f"Clerk answered {method} {path} with a body that is not JSON"
            ) from None
