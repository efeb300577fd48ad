"""The command line: parse, call the library, render, exit. The only place typer/rich live.

Errors become exit codes here, in ``ClerkSyncGroup.invoke``: a ``ClerkSyncError``
prints its one-line message and exits with its code (1 job failed, 2 usage or
configuration). Tracebacks never show locals: they would hold keys and URLs.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from clerksync import __version__
from clerksync.cli.common import State

HELP = """Keep your app's MongoDB users in step with Clerk.

\b
Settings, the first found wins:
  1. the process environment
  2. .env.local, then .env, in the working folder or, from a subfolder, the
     nearest folder up to the project's root that has them
     (--env-file FILE reads that file instead; it may come anywhere on the line)
Run `clerksync doctor` to see what is set, and what to fix.

\b
Exit codes:
  0  done (doctor: nothing failed; warnings and notes allowed)
  1  the job or a check failed (database down, Clerk refused, a non-2xx,
     a port already in use)
  2  usage or configuration error (a bad option, a missing or malformed setting)
"""


def hoist_env_file(args: list[str]) -> list[str]:
    """Move ``--env-file X`` to the front, so it works after the subcommand too.

    ``clerksync users list --env-file .env.prod`` is how people type it; click
    only knows the option on the root group. Nothing after ``--`` is touched.
    """
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            rest += args[i:]
            break
        if token == "--env-file" and i + 1 < len(args):
            front += args[i : i + 2]
            i += 2
            continue
        if token.startswith("--env-file="):
            front.append(token)
        else:
            rest.append(token)
        i += 1
    return front + rest


class ClerkSyncGroup(TyperGroup):
    """Root group: turns library errors into one line on stderr and the documented exit code."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta["clerksync.args"] = list(args)
        try:
            return super().parse_args(ctx, hoist_env_file(list(args)))
        except click_exceptions() as exc:
            raise with_close_options(exc) from None

    def invoke(self, ctx: Any) -> Any:
        from clerksync.cli.common import json_messages
        from clerksync.errors import ClerkSyncError

        try:
            return super().invoke(ctx)
        except ClerkSyncError as exc:
            fail(f"Error: {exc}", exc.exit_code)
        except click_exceptions() as raised:
            shown = with_close_options(raised)
            args = ctx.meta.get("clerksync.args", [])
            if "serve" in args and "--log-json" in args and hasattr(shown, "format_message"):
                # `serve --log-json`: a bad option is a start-up error like any other, one
                # JSON line (a log collector reads every line as JSON).
                from clerksync.receiver.logs import configure_logging

                configure_logging(json_lines=True)
                json_messages(True)
                fail(f"Error: {shown.format_message()}", getattr(shown, "exit_code", 2))
            # usage errors (exit 2 with click's message), exits, aborts: click's to show
            raise shown from None
        except Exception as exc:
            if os.environ.get("CLERKSYNC_DEBUG"):
                raise
            # Last resort: a bug, not the user's doing. One line, never locals (keys, URLs).
            fail(
                f"Error: unexpected {exc.__class__.__name__} (a bug in clerksync; "
                "run again with CLERKSYNC_DEBUG=1 for the traceback, and report it)",
                1,
            )
        finally:
            json_messages(False)


def click_exceptions() -> tuple[type[BaseException], ...]:
    """The exceptions click shows itself (usage errors, exits, aborts): click's, and those of
    the copy of click newer typer releases bundle (``typer._click``), which a subcommand's
    bad option raises there."""
    import importlib

    import click

    found: list[type[BaseException]] = [
        click.exceptions.Exit,
        click.ClickException,
        click.Abort,
        typer.Exit,
        typer.Abort,
    ]
    try:
        bundled = importlib.import_module("typer._click.exceptions")
    except ImportError:  # typer without its own click
        pass
    else:
        found.append(bundled.ClickException)  # UsageError, NoSuchOption, BadParameter, ...
    return tuple(found)


def with_close_options(exc: BaseException) -> BaseException:
    """An unknown option's "Possible options" as click offers them are any near enough by its
    loose measure (``--phone`` got ``--help, --json``): only the command's options close to
    what was typed are offered; when none is, the command's options are listed."""
    import difflib

    typed = getattr(exc, "option_name", None)
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ != "NoSuchOption" or not typed or ctx is None:
        return exc
    options = sorted(
        {
            name
            for param in ctx.command.get_params(ctx)
            for name in (*param.opts, *param.secondary_opts)
            if name.startswith("--") and name != "--help"
        }
    )
    close = [
        name
        for name in options
        if difflib.SequenceMatcher(None, typed, name).ratio() >= 0.75
        or (len(typed) > 4 and name.startswith(typed))
    ]
    exc.possibilities = close  # type: ignore[attr-defined]
    if not close and options:
        exc.message = (  # type: ignore[attr-defined]
            f"No such option: {typed}. `{ctx.command_path}` takes {', '.join(options)}"
        )
    return exc


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr (a JSON line under ``serve --log-json``), then exit ``code``."""
    from clerksync.cli.common import json_messages, one_line

    if json_messages():
        import logging

        logging.getLogger("clerksync.serve").error(message)
    else:
        typer.echo(one_line(message), err=True)
    raise typer.Exit(code) from None


app = typer.Typer(
    cls=ClerkSyncGroup,
    name="clerksync",
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    pretty_exceptions_enable=False,
    add_completion=True,
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
        typer.Option(
            "--env-file",
            metavar="FILE",
            help="Read settings from FILE instead of .env.local/.env (anywhere on the line).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    ctx.obj = State(env_file)


def _register() -> None:
    from clerksync.cli import doctor, events, inspector, orgs, send, serve, sync, users

    # short_help: the one line `clerksync --help` shows, whole at 80 columns
    app.command("doctor", short_help="Check the whole chain and say what to fix.")(doctor.doctor)
    app.add_typer(users.app, name="users")
    app.command("sync-metadata", short_help="Write the Mongo id and admin flag into Clerk.")(
        sync.sync_metadata
    )
    app.command("promote", short_help="Give a user admin rights (MongoDB and Clerk).")(sync.promote)
    app.command("demote", short_help="Take admin rights away (MongoDB and Clerk).")(sync.demote)
    app.command("reconcile", short_help="Fix the Clerk users the database missed.")(sync.reconcile)
    app.command("serve", short_help="Run the webhook receiver.")(serve.serve)
    app.command("send", short_help="Post a signed test event to a receiver.")(send.send)
    app.add_typer(events.app, name="events")
    app.command("inspect", short_help="Browse the delivery log in a local web page.")(
        inspector.inspect
    )
    app.add_typer(orgs.app, name="orgs")


def _argument_help_without_type() -> None:
    """Show an argument as its metavar (``ID``), not ``ID <str>``: the type is noise there.

    Typer prints an option's metavar instead of its type, but always appends the
    type to an argument; this makes arguments do what options do.
    """
    from typer.core import TyperArgument

    typed = TyperArgument.display_type_rich

    def display_type_rich(self: TyperArgument, ctx: Any) -> str | None:
        return None if self.metavar is not None else typed(self, ctx)

    TyperArgument.display_type_rich = display_type_rich  # type: ignore[method-assign,assignment]


_argument_help_without_type()


_register()


def main() -> None:
    app()
