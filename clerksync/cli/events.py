"""``clerksync events list|show|stats|tail|replay``: the receiver's delivery log."""

import sys
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from clerksync.clerk.jsonbody import dumps
from clerksync.cli.common import (
    JsonOption,
    SinceOption,
    cell,
    open_store,
    plural,
    print_json,
    print_table,
    say,
    state,
)

if TYPE_CHECKING:
    from clerksync.deliverylog.readers import Delivery

app = typer.Typer(help="The delivery log: list, show, stats, tail, replay.", no_args_is_help=True)

#: (key, heading) of the list table; --json has every field
COLUMNS = (
    ("id", "svix id"),
    ("type", "type"),
    ("objectId", "object"),
    ("userId", "user"),
    ("outcome", "outcome"),
    ("received", "received (UTC)"),
    ("ms", "ms"),
    ("error", "error"),
)
OUTCOME_HELP = "applied, duplicate, stale, ignored, rejected or failed."
TypeOption = Annotated[
    str | None, typer.Option("--type", metavar="TYPE", help="Only this event type.")
]
OutcomeOption = Annotated[
    str | None,
    typer.Option("--outcome", metavar="OUTCOME", help=f"Only this outcome: {OUTCOME_HELP}"),
]


def table_row(delivery: "Delivery") -> dict[str, object]:
    view = delivery.to_json()
    received = view["receivedAt"]
    return {
        **view,
        "outcome": f"{delivery.outcome} (replay)" if delivery.replay else delivery.outcome,
        "received": received[5:19].replace("T", " ") if received else None,
        "ms": None if delivery.duration_ms is None else f"{delivery.duration_ms:.1f}",
    }


@app.command("list")
def list_events(
    ctx: typer.Context,
    event_type: TypeOption = None,
    outcome: OutcomeOption = None,
    since: SinceOption = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N", min=1, help="At most N rows.")] = 50,
    json: JsonOption = False,
) -> None:
    """List deliveries, newest first (replays marked)."""
    from clerksync.deliverylog.readers import list_deliveries, parse_outcome, parse_since

    wanted = parse_outcome(outcome)
    after = parse_since(since) if since else None
    found = list_deliveries(
        open_store(ctx), event_type=event_type, outcome=wanted, since=after, limit=limit
    )
    if json:
        print_json([d.to_json() for d in found])
        return
    print_table(
        [table_row(d) for d in found],
        COLUMNS,
        plural(len(found), "delivery", "deliveries"),
        keep=("id", "outcome"),
        drop=("ms", "objectId", "userId", "received", "error"),
    )


@app.command("show")
def show_event(
    ctx: typer.Context,
    svix_id: Annotated[str, typer.Argument(metavar="ID", help="The delivery's svix-id.")],
    payload: Annotated[bool, typer.Option("--payload", help="Include the stored payload.")] = False,
    json: JsonOption = False,
) -> None:
    """Show one delivery by its svix-id, with its replays."""
    from clerksync.deliverylog.readers import show_delivery

    detail = show_delivery(open_store(ctx), svix_id)
    view = detail.to_json(payload=payload)
    if json:
        print_json(view)
        return
    for key, value in view.items():
        if value is None or value == [] or key == "replays":
            continue  # no "error: None": an absent field is not printed
        if key == "headers":
            for name, header in value.items():
                typer.echo(f"header {cell(name)}: {cell(header)}")
        elif key == "payload":  # strict JSON: every character past ASCII escaped
            typer.echo(f"payload: {dumps(value, indent=2)}")
        elif key == "payloadText":
            typer.echo(f"payload (not JSON, {len(detail.payload or b'')} bytes): {cell(value)}")
        elif key == "notes":
            typer.echo(f"notes: {cell('; '.join(value))}")
        else:
            typer.echo(f"{key}: {cell(value)}")
    for replayed in detail.replays:
        typer.echo(
            f"replayed: {cell(table_row(replayed)['receivedAt'])} -> {cell(replayed.outcome)}"
        )
    if payload and detail.payload is None:
        say("No payload: the delivery was rejected (never verified), or its payload expired.")


@app.command("stats")
def stats(ctx: typer.Context, since: SinceOption = None, json: JsonOption = False) -> None:
    """Counts and rates per outcome and per event type."""
    from clerksync.deliverylog.readers import delivery_stats, parse_since

    result = delivery_stats(open_store(ctx), since=parse_since(since) if since else None)
    if json:
        print_json(result.to_json())
        return
    total = plural(result.total, "delivery", "deliveries")
    print_table(
        [
            {"outcome": name, "count": count, "rate": f"{result.rate(name):.1%}"}
            for name, count in sorted(result.outcomes.items())
        ],
        (("outcome", "outcome"), ("count", "count"), ("rate", "rate")),
        f"{total}, by outcome",
    )
    print_table(
        [{"type": name, "count": count} for name, count in sorted(result.types.items())],
        (("type", "event type"), ("count", "count")),
        "by event type",
    )
    if result.replays:
        say(f"(and {plural(result.replays, 'replay')}, not counted above)")


def tail_line(delivery: "Delivery") -> str:
    """One line per delivery, as `stripe listen` prints them."""
    received = delivery.received_at.strftime("%H:%M:%S") if delivery.received_at else "--:--:--"
    ms = "" if delivery.duration_ms is None else f" {delivery.duration_ms:.1f} ms"
    parts = [
        received,
        "<-- replay" if delivery.replay else "-->",
        cell(delivery.type or "(unparsed)"),
        f"[{cell(delivery.id or 'no svix-id')}]",
        cell(delivery.outcome) + ms,
    ]
    if delivery.user_id:
        parts.append(cell(delivery.user_id))
    if delivery.error:
        parts.append(f"error: {cell(delivery.error)}")
    return "  ".join(parts)


@app.command("tail", short_help="Print the last deliveries; --follow, each as it arrives.")
def tail(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing deliveries as they arrive.")
    ] = False,
    event_type: TypeOption = None,
    outcome: OutcomeOption = None,
    lines: Annotated[
        int, typer.Option("--lines", "-n", metavar="N", min=0, help="Show the last N first.")
    ] = 10,
    interval: Annotated[
        float,
        typer.Option(
            "--interval", metavar="SECONDS", min=0.05, help="How often to look (--follow)."
        ),
    ] = 0.5,
    json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line on stdout.")
    ] = False,
) -> None:
    """Print the last deliveries, and with --follow each one as it arrives.

    The live view to keep open beside the app. Ctrl-C stops.
    """
    from clerksync.deliverylog.readers import Tail, parse_outcome

    watcher = Tail(open_store(ctx), event_type=event_type, outcome=parse_outcome(outcome))

    def emit(found: list["Delivery"]) -> None:
        for delivery in found:
            line = dumps(delivery.to_json()) if json else tail_line(delivery)
            sys.stdout.write(line + "\n")
        sys.stdout.flush()

    emit(watcher.recent(lines))
    if not follow:
        return
    say("Waiting for deliveries (Ctrl-C stops)…")
    try:
        while True:
            time.sleep(interval)
            emit(watcher.poll())
    except KeyboardInterrupt:
        pass


@app.command("replay")
def replay(
    ctx: typer.Context,
    svix_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="The delivery's svix-id.")
    ] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Replay every delivery that is still failed.")
    ] = False,
    since: SinceOption = None,
    json: JsonOption = False,
) -> None:
    """Re-apply stored payloads through the receiver's own code path.

    One delivery by its ID, or every one still failed (--failed; --since narrows it).

    Payloads were verified when they arrived; a replay obeys the same ordering
    and tombstone rules, so replaying is always safe. Each replay is logged as
    a replay, beside the delivery it repeats.
    """
    from clerksync.deliverylog.readers import parse_since
    from clerksync.deliverylog.replay import replay as run
    from clerksync.errors import UsageError

    if since is not None and not failed:
        raise UsageError(
            "--since narrows --failed: `clerksync events replay --failed --since 1h` "
            "(one delivery is named by its ID alone)"
        )
    if (svix_id is None) == (not failed):
        raise UsageError(f"give one delivery ID, or --failed{' (not both)' if failed else ''}")
    after = parse_since(since) if since else None
    store = open_store(ctx, indexes=True)
    ttl = timedelta(days=state(ctx).settings.payload_ttl_days)
    results = run(store, svix_id=svix_id, failed=failed, since=after, payload_ttl=ttl)
    failures = sum(r.outcome == "failed" for r in results)
    # what the receiver refuses stays refused: no rerun can fix it, so it is no failure
    rejected = sum(r.outcome == "rejected" for r in results)
    if json:
        print_json([r.to_json() for r in results])
    else:
        for r in results:
            typer.echo(
                f"{cell(r.id)} {cell(r.type)} {cell(r.user_id or '')}: {cell(r.outcome)} "
                f"(was {cell(r.original_outcome)})" + (f": {cell(r.error)}" if r.error else "")
            )
        say(
            f"replayed {plural(len(results), 'delivery', 'deliveries')}"
            + (f", {failures} still failed (rerun once fixed)" if failures else "")
            + (f", {rejected} rejected (a replay cannot fix them)" if rejected else "")
        )
    if failures:
        raise typer.Exit(1)
