"""``clerksync send``: post a signed test event to a receiver."""

import json as jsonlib
from pathlib import Path
from typing import Annotated

import typer

from clerksync.cli.common import JsonOption, print_json, say, state


def send(
    ctx: typer.Context,
    event_type: Annotated[
        str, typer.Argument(metavar="EVENT", help="user.created, user.updated or user.deleted.")
    ],
    user_id: Annotated[str | None, typer.Option("--user-id", help="Clerk user id.")] = None,
    email: Annotated[str | None, typer.Option("--email", help="Primary email.")] = None,
    first_name: Annotated[str | None, typer.Option("--first-name", help="First name.")] = None,
    last_name: Annotated[str | None, typer.Option("--last-name", help="Last name.")] = None,
    username: Annotated[str | None, typer.Option("--username", help="Username.")] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="A captured event or user object (JSON file).")
    ] = None,
    secret: Annotated[
        str | None, typer.Option("--secret", help="Sign with this whsec_ secret.")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Receiver URL (default: a running `serve --dev`, else "
            "NEXT_PUBLIC_URL/api/webhooks/clerk, else the local receiver).",
        ),
    ] = None,
    print_curl: Annotated[
        bool, typer.Option("--print", help="Print a ready-to-run curl command instead.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Send a signed test event (signed with the svix library, exactly as Clerk's are).

    Prints the status and latency; on a non-2xx, the answer and its likely cause.
    Exits 1 on any non-2xx or no answer.
    """
    from clerksync.config import check_webhook_secret
    from clerksync.errors import UsageError
    from clerksync.send import build_event, curl_command, post_event, resolve_target

    body = jsonlib.dumps(
        build_event(
            event_type,
            user_id=user_id,
            email=email,
            first_name=first_name,
            last_name=last_name,
            username=username,
            data_file=data,
        )
    ).encode()
    target, key = resolve_target(state(ctx).settings, url, secret)
    problem = check_webhook_secret(key)
    if problem:
        raise UsageError(f"the signing secret {problem}")
    if print_curl:
        typer.echo(curl_command(target, key, body))
        say("The signature expires in 5 minutes.")
        return
    result = post_event(target, key, body)
    if json:
        print_json(result.to_json())
    elif result.status is None:
        say(f"POST {target}: no answer after {result.latency_ms:.0f} ms")
    else:
        say(f"POST {target}: {result.status} in {result.latency_ms:.0f} ms")
        if not result.ok:
            say(f"  answer: {result.response[:300]}")
    if not result.ok:
        if not json:
            say(f"  likely cause: {result.diagnosis}")
        raise typer.Exit(1)
