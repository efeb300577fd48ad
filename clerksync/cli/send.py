"""``clerksync send``: post a signed test event to a receiver."""

import json as jsonlib
from pathlib import Path
from typing import Annotated

import typer

from clerksync.cli.common import JsonOption, print_json, say, state


def send(
    ctx: typer.Context,
    event_type: Annotated[
        str,
        typer.Argument(
            metavar="EVENT",
            help="user.created, user.updated, user.deleted, session.created, or any "
            "other Clerk event type (organization.created, email.created, role.created…).",
        ),
    ],
    user_id: Annotated[
        str | None,
        typer.Option(
            "--user-id",
            metavar="ID",
            help="Clerk user id (default for user.updated/deleted: the last user `send` created).",
        ),
    ] = None,
    email: Annotated[
        str | None, typer.Option("--email", metavar="EMAIL", help="Primary email.")
    ] = None,
    first_name: Annotated[
        str | None, typer.Option("--first-name", metavar="NAME", help="First name.")
    ] = None,
    last_name: Annotated[
        str | None, typer.Option("--last-name", metavar="NAME", help="Last name.")
    ] = None,
    username: Annotated[
        str | None, typer.Option("--username", metavar="NAME", help="Username.")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", metavar="FILE", help="A captured event or user object (JSON, at most 1 MiB)."
        ),
    ] = None,
    secret: Annotated[
        str | None, typer.Option("--secret", metavar="WHSEC", help="Sign with this whsec_ secret.")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            metavar="URL",
            help="Receiver URL (default: the running `serve`, else "
            "NEXT_PUBLIC_URL/api/webhooks/clerk, else http://127.0.0.1:8000).",
        ),
    ] = None,
    print_curl: Annotated[
        bool, typer.Option("--print", help="Print a ready-to-run curl command instead.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Send a signed test event, exactly as Clerk signs them (svix).

    Only the fields given are set: nothing is made up. `user.updated` changes
    the last user `send` created (or --user-id) and keeps its other fields.
    Prints the status and latency; on a non-2xx, the answer and its likely
    cause. Exits 1 on any non-2xx or no answer.
    """
    from clerksync.devtools.localstate import SendState
    from clerksync.devtools.send import build_event, curl_command, post_event, resolve_target
    from clerksync.errors import UsageError
    from clerksync.settings import check_http_url, check_webhook_secret

    settings = state(ctx).settings
    if url is not None and check_http_url(url):
        raise UsageError(f"--url {url[:60]!r} {check_http_url(url)}")
    sent_state = SendState.load(settings.state_dir)
    body = build_event(
        event_type,
        user_id=user_id,
        email=email,
        first_name=first_name,
        last_name=last_name,
        username=username,
        data_file=data,
        state=sent_state,
    )
    raw = jsonlib.dumps(body).encode()
    target, key = resolve_target(settings, url, secret)
    # only what is used is checked: a running `serve --dev` needs neither variable
    if url is None and target == settings.webhook_url:
        settings.check("NEXT_PUBLIC_URL")
    if secret is None and key == settings.webhook_secret:
        settings.check("WEBHOOK_SECRET")
    problem = check_webhook_secret(key)
    if problem:
        raise UsageError(f"the signing secret {problem}")
    if print_curl:
        typer.echo(curl_command(target, key, raw))
        say("The signature expires in 5 minutes.")
        return
    result = post_event(target, key, raw)
    if result.ok:
        sent_state.sent(body)
        try:
            sent_state.save(settings.state_dir)
        except OSError:
            say("Note: could not remember this user for the next `send` (state dir not writable).")
    made = body.get("data")
    object_id = made.get("id") if isinstance(made, dict) else None
    object_id = object_id if isinstance(object_id, str) else None
    if json:
        # what was sent is named: the id of the user (or other object) it made or changed
        print_json(
            {
                **result.to_json(),
                "type": event_type,
                "objectId": object_id,
                "userId": object_id if event_type.startswith("user.") else None,
            }
        )
    elif result.status is None:
        say(f"POST {target}: no answer after {result.latency_ms:.0f} ms")
    else:
        answer = result.answer
        outcome = answer.get("outcome") if isinstance(answer, dict) else None
        what = f"{event_type} {body['data'].get('id', '')}".strip()
        say(
            f"POST {target}: {result.status}{' ' + str(outcome) if outcome else ''} "
            f"in {result.latency_ms:.0f} ms ({what})"
        )
        if not result.ok:
            error = answer.get("error") if isinstance(answer, dict) else None
            # the receiver's own word, whole: a cut error loses the index it names
            say(f"  answer: {error if isinstance(error, str) else result.response[:2000]}")
    if not result.ok:
        if not json:
            say(f"  likely cause: {result.diagnosis}")
        raise typer.Exit(1)
