"""``clerksync inspect``: the delivery log in a local web page."""

from datetime import timedelta
from typing import Annotated, Any

import typer

from clerksync.cli.common import open_store, say, state


def inspect(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option("--host", metavar="ADDRESS", help="Address to bind (loopback, or --token)."),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", metavar="PORT", min=1, max=65535, help="Port to bind.")
    ] = 4041,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="TOKEN",
            envvar="CLERKSYNC_INSPECT_TOKEN",
            help="Required of every request (16+ characters); needed to bind a "
            "non-loopback address.",
        ),
    ] = None,
) -> None:
    """Browse the delivery log in a local web page: a live list with filters, each
    delivery's payload and what it changed, replay, a chart, doctor.

    Binds 127.0.0.1:4041; another address needs --token. Ctrl-C stops.
    """
    import uvicorn

    from clerksync.cli.serve import check_bindable
    from clerksync.devtools.inspector import check_bind, create_inspector
    from clerksync.doctor import run_doctor

    check_bind(host, token)
    check_bindable(host, port)
    settings = state(ctx).settings
    store = open_store(ctx)
    app = create_inspector(
        store,
        doctor=lambda: run_doctor(settings),
        host=host,
        port=port,
        token=token,
        payload_ttl=timedelta(days=settings.payload_ttl_days),
    )
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + ("?token=<the token>" if token else "")

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:  # said once it listens and Ctrl-C is uvicorn's (as serve)
                say(
                    f"Inspector on {url} (the delivery log of database {store.name!r}). "
                    "Ctrl-C stops."
                )

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    Server(config).run()
