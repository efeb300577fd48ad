"""``clerksync events list|show|stats|replay``: the receiver's delivery log."""

import json as jsonlib
import time
from datetime import timedelta
from typing import Annotated, Any

import typer

from clerksync.cli.common import JsonOption, open_store, print_json, print_table, say, state

app = typer.Typer(help="The delivery log: list, show, stats, replay.", no_args_is_help=True)

ROW = ("id", "type", "objectId", "userId", "outcome", "receivedAt", "durationMs", "error")
SinceOption = Annotated[str | None, typer.Option("--since", help="30m, 2h, 7d or ISO 8601.")]


def row(entry: Any) -> dict[str, Any]:
    """A log record as documented: ids and outcome, no emails or names."""
    received = entry.get("receivedAt")
    return {
        "id": entry.get("svixId"),
        "type": entry.get("type"),
        "objectId": entry.get("objectId"),
        "userId": entry.get("userId"),
        "outcome": entry.get("outcome"),
        "receivedAt": received.isoformat().replace("+00:00", "Z") if received else None,
        "durationMs": entry.get("durationMs"),
        "error": entry.get("error"),
    }


@app.command("list")
def list_events(
    ctx: typer.Context,
    event_type: Annotated[str | None, typer.Option("--type", help="Only this event type.")] = None,
    outcome: Annotated[
        str | None,
        typer.Option("--outcome", help="applied, duplicate, stale, ignored, rejected or failed."),
    ] = None,
    since: SinceOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most N rows.")] = 50,
    json: JsonOption = False,
) -> None:
    """List deliveries, newest first."""
    from clerksync.deliveries import find_deliveries, since_ago

    store = open_store(ctx)
    rows = [
        row(e)
        for e in find_deliveries(
            store,
            event_type=event_type,
            outcome=outcome,
            since=since_ago(since) if since else None,
            limit=limit,
        )
    ]
    if json:
        print_json(rows)
        return
    print_table(rows, ROW, f"{len(rows)} deliveries")


@app.command("show")
def show_event(
    ctx: typer.Context,
    svix_id: Annotated[str, typer.Argument(metavar="ID", help="The delivery's svix-id.")],
    payload: Annotated[bool, typer.Option("--payload", help="Include the stored payload.")] = False,
    json: JsonOption = False,
) -> None:
    """Show one delivery by its svix-id."""
    from clerksync.deliveries import find_delivery, stored_payload
    from clerksync.errors import NotFound

    entry = find_delivery(open_store(ctx), svix_id)
    if entry is None:
        raise NotFound(f"no delivery {svix_id!r} in the log")
    view = row(entry)
    if payload:
        view["payload"] = stored_payload(entry)
    if json:
        print_json(view)
    else:
        for key, value in view.items():
            typer.echo(f"{key}: {jsonlib.dumps(value) if key == 'payload' else value}")


@app.command("stats")
def stats(ctx: typer.Context, since: SinceOption = None, json: JsonOption = False) -> None:
    """Counts and rates per outcome and per event type."""
    from clerksync.deliveries import iter_records, since_ago

    store = open_store(ctx)
    by_outcome: dict[str, int] = {}
    by_type: dict[str, int] = {}
    for entry in iter_records(store, since=since_ago(since) if since else None):
        by_outcome[entry["outcome"]] = by_outcome.get(entry["outcome"], 0) + 1
        key = entry.get("type") or "(unparsed)"
        by_type[key] = by_type.get(key, 0) + 1
    total = sum(by_outcome.values())
    outcomes = {k: {"count": v, "rate": round(v / total, 4)} for k, v in by_outcome.items()}
    result = {"total": total, "outcomes": outcomes, "types": by_type}
    if json:
        print_json(result)
        return
    typer.echo(f"{total} deliveries")
    for name, data in sorted(outcomes.items()):
        typer.echo(f"  {name:<10} {data['count']:>7}  {data['rate']:.1%}")
    for name, count in sorted(by_type.items()):
        typer.echo(f"  {name:<24} {count:>7}")


@app.command("replay")
def replay(
    ctx: typer.Context,
    svix_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="The delivery's svix-id.")
    ] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Replay every failed delivery.")] = False,
    since: SinceOption = None,
    json: JsonOption = False,
) -> None:
    """Re-apply stored payloads through the receiver's own code path.

    Payloads were verified when they arrived; a replay obeys the same ordering
    and tombstone rules, so replaying is always safe.
    """
    from clerksync.deliveries import (
        append_records,
        find_delivery,
        iter_records,
        record,
        since_ago,
        stored_body,
    )
    from clerksync.errors import NotFound, UsageError
    from clerksync.mongo import utcnow
    from clerksync.webhooks import apply_event, parse_event

    if (svix_id is None) == (not failed):
        raise UsageError("give one delivery ID, or --failed")
    store = open_store(ctx, indexes=True)
    ttl = timedelta(days=state(ctx).settings.payload_ttl_days)
    if failed:
        newest: dict[str, Any] = {}  # one replay per delivery, from its newest failure
        for entry in iter_records(
            store, outcome="failed", since=since_ago(since) if since else None, payload=True
        ):
            if entry.get("payload") and entry["svixId"] not in newest:
                newest[entry["svixId"]] = entry
        entries = list(reversed(newest.values()))  # oldest first, as they arrived
    else:
        found = find_delivery(store, svix_id or "")
        if found is None:
            raise NotFound(f"no delivery {svix_id!r} in the log")
        if not found.get("payload"):
            raise NotFound(f"delivery {svix_id!r} has no stored payload (rejected, or expired)")
        entries = [found]
    results = []
    for entry in entries:
        started = time.perf_counter()
        body = stored_body(entry)
        assert body is not None  # selected for having one
        event = parse_event(body)
        outcome, _ = apply_event(store, event)
        append_records(
            store,
            [
                record(
                    svix_id=entry["svixId"],
                    event_type=event.type,
                    user_id=event.user_id,
                    object_id=event.object_id,
                    outcome=outcome,
                    received_at=utcnow(),
                    source="replay",
                    duration_ms=(time.perf_counter() - started) * 1000,
                    payload_ttl=ttl,
                )
            ],
        )
        results.append(
            {"id": entry["svixId"], "type": event.type, "userId": event.user_id, "outcome": outcome}
        )
    if json:
        print_json(results)
    else:
        for r in results:
            typer.echo(f"{r['id']} {r['type']} {r['userId']}: {r['outcome']}")
        say(f"replayed {len(results)} deliveries")
