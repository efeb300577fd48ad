"""``clerksync serve``: the local webhook receiver."""

import dataclasses
from collections.abc import Callable
from typing import Annotated

import typer

from clerksync.cli.common import say, state
from clerksync.errors import ClerkSyncError, UsageError


class PortInUse(ClerkSyncError):
    """Another process listens on the address: exit 1 (the job could not be done)."""


def check_bindable(host: str, port: int) -> None:
    """Bind the address once, and let go: fail now, in one line, rather than in uvicorn.

    A second ``serve`` must stop here, before it says "Receiving on" and before
    it touches the running one's files. (uvicorn binds with SO_REUSEADDR, so the
    test does the same: a socket left in TIME_WAIT does not count as in use.)
    """
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError, ValueError):
        raise UsageError(f"--host {host[:60]!r} is not an address this machine has") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"{host}:{port} is already in use (another `clerksync serve`?): "
                    f"stop it, or pick another port with --port"
                ) from None
            if exc.errno == errno.EACCES:
                raise UsageError(
                    f"{host}:{port}: not allowed to bind (ports below 1024 need root)"
                ) from None
            raise UsageError(
                f"--host {host[:60]!r} is not an address this machine has ({exc.strerror})"
            ) from None


def local_url(host: str, port: int) -> str:
    """The URL a local ``send`` posts to: a wildcard bind answers on loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/api/webhooks/clerk"


def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", metavar="ADDRESS", help="Address to bind.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", metavar="PORT", min=1, max=65535, help="Port to bind.")
    ] = 8000,
    log_json: Annotated[
        bool,
        typer.Option("--log-json", help="Log JSON lines (every line, uvicorn's included)."),
    ] = False,
    limit_concurrency: Annotated[
        int,
        typer.Option(
            "--limit-concurrency",
            metavar="N",
            min=16,
            help="Connections and requests at once; past it, 503 (Svix retries). Kept below "
            "the open-file limit.",
        ),
    ] = 1000,
    dev: Annotated[
        bool,
        typer.Option(
            "--dev",
            help="Use this machine's local signing secret (made once, kept across restarts), "
            "print it, and leave it for `send`.",
        ),
    ] = False,
    rotate_secret: Annotated[
        bool, typer.Option("--rotate-secret", help="With --dev: make a new local secret.")
    ] = False,
    metrics: Annotated[
        bool,
        typer.Option(
            "--metrics/--no-metrics",
            help="Serve GET /metrics (Prometheus' text format); --no-metrics records none.",
        ),
    ] = True,
    users_me: Annotated[
        bool,
        typer.Option(
            "--users-me",
            help="Also serve GET /api/users/me: the caller's document for a Clerk session "
            "token, fetched from Clerk if no webhook brought it yet. Needs CLERK_SECRET_KEY; "
            "CLERK_JWT_KEY verifies tokens without a network call; CLERK_AUTHORIZED_PARTIES.",
        ),
    ] = False,
) -> None:
    """Run the webhook receiver: POST /api/webhooks/clerk, GET /healthz, /livez, /readyz,
    /metrics.

    Needs WEBHOOK_SECRET, or --dev for a local one. Without CLERK_SECRET_KEY
    users are still stored; their metadata write-backs wait until a key is set.
    With --users-me, also GET /api/users/me (off unless asked).
    Exits 1 at once if the port is in use.
    """
    from clerksync.devtools.localstate import (
        DEV_SECRET_FILE,
        dev_secret,
        forget_running_server,
        write_running_server,
    )
    from clerksync.receiver.run import run
    from clerksync.settings import mask
    from clerksync.store.connect import connect

    settings = state(ctx).settings
    if rotate_secret and not dev:
        raise UsageError("--rotate-secret goes with --dev (it renews the local secret)")
    settings.check("MONGODB_URL", "MONGODB_DB", "CLERK_SECRET_KEY", "CLERK_API_URL")
    if users_me:
        settings.check("CLERK_JWT_KEY", "CLERK_AUTHORIZED_PARTIES")
        settings.require(
            "CLERK_SECRET_KEY", hint=" (--users-me fetches users the database lacks from Clerk)"
        )
    if not dev:
        settings.require(
            "WEBHOOK_SECRET", hint=", or run `clerksync serve --dev` for a local secret"
        )
    check_bindable(host, port)  # before anything is announced or written
    url = local_url(host, port)
    tell: Callable[[str], None] = say
    if log_json:  # every line JSON, these messages too
        import logging

        from clerksync.receiver.logs import configure_logging

        configure_logging(json_lines=True)
        tell = logging.getLogger("clerksync.serve").info
    if dev:
        secret, made = dev_secret(settings.state_dir, rotate=rotate_secret)
        settings = dataclasses.replace(settings, webhook_secret=secret)
        kept = "new" if made else "kept"
        # In full only when new (made or rotated): it is to be copied once; `send` and
        # `doctor` find it in the file anyway. A log line is no place for it at all.
        shown = secret if made and not log_json else mask(secret)
        tell(
            f"Dev mode: the webhook signing secret is {shown} ({kept}; in "
            f"{settings.state_dir / DEV_SECRET_FILE}, reused until --rotate-secret). "
            "`clerksync send` finds it."
        )
    store = connect(settings, announce=tell)
    store.ping()  # refuse to start against a database that does not answer
    writeback = (
        "on"
        if settings.clerk_secret_key
        else "waiting (CLERK_SECRET_KEY is unset; users are still stored)"
    )

    def started() -> None:
        # Only now: `send` finds a server that answers, and Ctrl-C is uvicorn's to handle.
        write_running_server(settings.state_dir, url, dev=dev)
        tell(
            f"Receiving on {url} (secret {mask(settings.webhook_secret)}; "
            f"write-backs {writeback}). Ctrl-C stops."
        )
        if users_me:
            tell(f"Serving {url.rsplit('/api/', 1)[0]}/api/users/me for Clerk session tokens.")

    try:
        run(
            settings,
            host=host,
            port=port,
            log_json=log_json,
            store=store,
            limit_concurrency=limit_concurrency,
            metrics=metrics,
            users_me=users_me,
            on_started=started,
        )
    finally:
        store.close()
        forget_running_server(settings.state_dir)
        if settings.uses_embedded_store:
            idle = settings.embedded_idle_seconds
            after = f"{idle / 60:.0f} minutes" if idle >= 120 else f"{idle:.0f} seconds"
            tell(
                f"Stopped. The embedded store stops by itself after {after} "
                "without a client (CLERKSYNC_EMBEDDED_IDLE_SECONDS)."
            )
