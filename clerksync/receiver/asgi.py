"""The receiver as ASGI: an app of its own (``create_app``, what ``serve`` runs), or mounted
in an app of yours (``mount``), its start and stop tied to that app's lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from clerksync.receiver.app import Receiver
from clerksync.receiver.health import livez
from clerksync.receiver.users_me import PerUser, users_me_route
from clerksync.settings import WEBHOOK_PATH, Settings


class ReceiverApp(Starlette):
    """Starlette, but a delivery (``POST`` to the webhook's path) goes straight to the
    receiver's plain ASGI handler: a delivery is the hot path, and Starlette's middleware
    stack, router and request objects cost about as much CPU as the delivery itself. Every
    other request (and any other method on the webhook's path: a 405) is Starlette's."""

    def __init__(self, receiver: Receiver, **options: Any) -> None:
        super().__init__(**options)
        self.receiver = receiver
        self.state.receiver = receiver

    async def __call__(
        self,
        scope: Any,
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and route_path(scope) == WEBHOOK_PATH
        ):
            await self.receiver.webhook(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class Delivery:
    """The receiver's webhook as a plain ASGI app (an instance: Starlette wraps functions
    and methods as request handlers, and calls an app as it is)."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.receiver.webhook(scope, receive, send)


def route_path(scope: Mapping[str, Any]) -> str:
    """The request's path below where the app is mounted (Starlette's router's rule)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path != root and path[len(root)] == "/":
        return path[len(root) :]
    return path


def create_app(
    settings: Settings, *, users_me: bool | PerUser = False, **options: Any
) -> Starlette:
    """The receiver as an ASGI app of its own (``serve`` runs it); to add it to an app of
    yours, use ``mount``, which also runs its lifespan. ``metrics=False`` records none and
    serves no ``/metrics``. ``users_me``: also serve ``GET /api/users/me``
    (``clerksync.receiver.users_me``; a ``PerUser``: with its limits)."""
    receiver = Receiver(settings, **options)
    routes = [
        # Deliveries never reach it (``ReceiverApp``): it answers other methods with a 405.
        Route(WEBHOOK_PATH, Delivery(receiver), methods=["POST"]),
        Route("/healthz", receiver.healthz, methods=["GET"]),
        Route("/livez", livez, methods=["GET"]),
        Route("/readyz", receiver.readyz, methods=["GET"]),
    ]
    if receiver.metrics is not None:
        routes.append(Route("/metrics", receiver.metrics_page, methods=["GET"]))
    if users_me:
        limiter = users_me if isinstance(users_me, PerUser) else None
        routes.append(users_me_route(receiver, limiter))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        receiver.start()
        try:
            yield
        finally:
            receiver.stop()

    return ReceiverApp(receiver, routes=routes, lifespan=lifespan)


def mount(app: Any, settings: Settings, *, path: str = "/", **options: Any) -> Receiver:
    """Mount the receiver in a Starlette or FastAPI ``app`` at ``path``, its start and stop
    tied to the app's lifespan: Starlette runs no lifespan of a mounted app, so a receiver
    merely mounted would be stopped by nothing (its threads, database client and files left
    behind by every app a test suite builds)."""
    receiver_app = create_app(settings, **options)
    receiver: Receiver = receiver_app.state.receiver
    app.mount(path, receiver_app)
    outer = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(instance: Any) -> AsyncIterator[Any]:
        async with outer(instance) as state:
            receiver.start()
            try:
                yield state
            finally:
                receiver.stop()

    app.router.lifespan_context = lifespan
    return receiver
