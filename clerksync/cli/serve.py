"""``clerksync serve``: the local webhook receiver."""

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Annotated

import typer

from clerksync.cli.common import say, state


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to bind.")] = 8000,
    log_json: Annotated[
        bool,
        typer.Option("--log-json", help="Log JSON lines (every line, uvicorn's included)."),
    ] = False,
    limit_concurrency: Annotated[
        int,
        typer.Option(
            "--limit-concurrency",
            min=16,
            help="Connections and requests at once; past it, 503 (Svix retries). Kept below "
            "the open-file limit.",
        ),
    ] = 1000,
    dev: Annotated[
        bool,
        typer.Option("--dev", help="Use a fresh whsec_ secret, print it, and leave it for `send`."),
    ] = False,
) -> None:
    """Run the webhook receiver: POST /api/webhooks/clerk, GET /healthz.

    Needs WEBHOOK_SECRET (or --dev). Without CLERK_SECRET_KEY users are still
    stored; their metadata write-backs wait until a key is set.
    """
    from clerksync.config import mask
    from clerksync.send import DEV_SECRET_FILE, write_dev_secret
    from clerksync.server import run
    from clerksync.store import connect
    from clerksync.webhooks import new_secret

    settings = state(ctx).settings
    tell: Callable[[str], None] = say
    if log_json:  # every line JSON, these messages too
        import logging

        from clerksync.server import configure_logging

        configure_logging(json_lines=True)
        tell = logging.getLogger("clerksync.serve").info
    if dev:
        secret = new_secret()
        settings = dataclasses.replace(settings, webhook_secret=secret)
        path = write_dev_secret(
            settings.state_dir, secret, f"http://{host}:{port}/api/webhooks/clerk"
        )
        tell(
            f"Dev mode: your webhook signing secret is {secret} (saved in {path}; "
            "`clerksync send` uses it)"
        )
    settings.require("WEBHOOK_SECRET")
    store = connect(settings, announce=tell)
    store.ping()  # refuse to start against a database that does not answer
    writeback = (
        "on"
        if settings.clerk_secret_key
        else "waiting (CLERK_SECRET_KEY is unset; users are still stored)"
    )
    tell(
        f"Receiving on http://{host}:{port}/api/webhooks/clerk "
        f"(secret {mask(settings.webhook_secret)}; write-backs {writeback}). Ctrl-C stops."
    )
    try:
        run(
            settings,
            host=host,
            port=port,
            log_json=log_json,
            store=store,
            limit_concurrency=limit_concurrency,
        )
    finally:
        if dev:
            with contextlib.suppress(OSError):
                (settings.state_dir / DEV_SECRET_FILE).unlink()
