"""The command line: parse, call the library, render, exit. The only place typer/rich live.

Errors become exit codes here, in ``ClerkSyncGroup.invoke``: a ``ClerkSyncError``
prints its one-line message and exits with its code (1 job failed, 2 usage or
configuration). Tracebacks never show locals: they would hold keys and URLs.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from clerksync import __version__
from clerksync.cli.common import State


class ClerkSyncGroup(TyperGroup):
    """Root group: turns library errors into one line on stderr and the documented exit code."""

    def invoke(self, ctx: Any) -> Any:
        from clerksync.errors import ClerkSyncError

        try:
            return super().invoke(ctx)
        except ClerkSyncError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=ClerkSyncGroup,
    name="clerksync",
    help="Keep your app's MongoDB users in step with Clerk.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"clerksync {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    env_file: Annotated[
        str | None,
        typer.Option("--env-file", help="Read settings from this file instead of .env.local/.env."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Keep your app's MongoDB users in step with Clerk.

    Settings come from the environment, then .env.local, then .env (see .env.example).
    Exit codes: 0 done, 1 the job or a check failed, 2 usage or configuration error.
    """
    ctx.obj = State(env_file)


def _register() -> None:
    from clerksync.cli import doctor, events, orgs, send, serve, sync, users

    app.command("doctor")(doctor.doctor)
    app.add_typer(users.app, name="users")
    app.command("sync-metadata")(sync.sync_metadata)
    app.command("promote")(sync.promote)
    app.command("demote")(sync.demote)
    app.command("reconcile")(sync.reconcile)
    app.command("serve")(serve.serve)
    app.command("send")(send.send)
    app.add_typer(events.app, name="events")
    app.add_typer(orgs.app, name="orgs")


_register()


def main() -> None:
    app()
