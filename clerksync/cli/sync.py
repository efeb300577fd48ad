"""``sync-metadata``, ``promote``/``demote``, ``reconcile``: the bulk jobs."""

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clerksync.cli.common import JsonOption, cell, open_store, print_json, say, state

if TYPE_CHECKING:
    from clerksync.clerk.gateway import ClerkGateway
    from clerksync.jobs.reconcile import ReconcileResult

RateOption = Annotated[
    float | None,
    typer.Option(
        "--rate",
        metavar="N",
        min=0.1,
        help="Clerk requests per second (default: 95% of the instance limit told by the "
        "key, 9.5/s development, 95/s production; lower it to leave your app more room). "
        "The pace holds per process: a `serve` with a key running meanwhile writes back at "
        "its own 95%, so halve it while one runs.",
    ),
]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Change nothing; report.")]
RebindOption = Annotated[
    bool,
    typer.Option(
        "--rebind",
        help="The database moves to the key's Clerk instance: accept it, and remember it.",
    ),
]


def gateway(ctx: typer.Context, *, required: bool = True) -> "ClerkGateway | None":
    from clerksync.clerk.gateway import ClerkGateway

    settings = state(ctx).settings
    settings.check("CLERK_SECRET_KEY", "CLERK_API_URL")
    if required:
        settings.require("CLERK_SECRET_KEY")
    if not settings.clerk_secret_key:
        return None
    clerk = ClerkGateway(settings.clerk_secret_key, api_url=settings.clerk_api_url, fail_fast=True)
    ctx.call_on_close(clerk.close)
    return clerk


def rate_for(ctx: typer.Context, rate: float | None) -> float:
    from clerksync.clerk.gateway import default_rate

    return rate if rate is not None else default_rate(state(ctx).settings.clerk_secret_key)


def progress_count(done: int, total: int | None) -> str:
    """``12/500`` once the total is known; before it, what is done so far (or nothing)."""
    if total is None:
        return f"{done}" if done else ""
    return f"{done}/{total}"


@contextlib.contextmanager
def progress_bar(label: str, quiet: bool) -> Iterator[Any]:
    """A Rich bar with ETA on a terminal; nothing with --json or when piped. A spinner (and
    the count so far) until the total is known: never ``0/None``."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn

    with Progress(
        SpinnerColumn(),
        TextColumn(label),
        BarColumn(),
        TextColumn("{task.fields[count]}"),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None, count="")

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total, count=progress_count(done, total))

        yield update


def sync_metadata(
    ctx: typer.Context,
    dry_run: DryRunOption = False,
    rate: RateOption = None,
    rebind: RebindOption = False,
    json: JsonOption = False,
) -> None:
    """Write userMongoId/isAdmin into Clerk for every user whose Clerk copy differs.

    Reads Clerk in batches of 100 ids, writes only the drifted users (merged, so
    other metadata keys survive). Exits 1 if any write failed; rerun to finish.
    Refuses (exit 2) when the key is for another Clerk instance than the
    database's, until --rebind.
    """
    from clerksync.jobs.metadata import sync_metadata as run

    store = open_store(ctx, indexes=True)
    clerk = gateway(ctx)
    assert clerk is not None
    with progress_bar("sync-metadata", json) as progress:
        result = run(
            store,
            clerk,
            rate=rate_for(ctx, rate),
            dry_run=dry_run,
            rebind=rebind,
            progress=progress,
        )
    if json:
        print_json(result.to_json())
    else:
        verb = "would update" if dry_run else "updated"
        say(
            f"{result.total} users: {verb} {result.updated}, unchanged "
            f"{result.unchanged}, failed {result.failed}, missing in Clerk "
            f"{result.missing}"
            + (f", busy {result.busy} (a receiver is writing them back now)" if result.busy else "")
        )
        for clerk_id in result.would_change:
            typer.echo(cell(clerk_id))
        for error in result.errors:
            say(f"  failed: {error}")
    if result.failed:
        raise typer.Exit(1)


def _set_admin(ctx: typer.Context, ident: str, value: bool, json: bool) -> None:
    from clerksync.jobs.admin import set_admin

    store = open_store(ctx, indexes=True)
    result = set_admin(store, gateway(ctx, required=False), ident, value)
    if json:
        print_json(result.to_json())
    user = result.user
    role = "is now an admin" if value else "is no longer an admin"
    if result.clerk == "failed":
        say(
            f"MongoDB: {user['clerkId']} {role}. Clerk was not updated "
            f"({result.error}); `clerksync sync-metadata` will finish it."
        )
        raise typer.Exit(1)
    if not json:
        where = {
            "updated": "MongoDB and Clerk",
            "not linked": "MongoDB (the app's own user: no Clerk id)",
        }.get(result.clerk, "MongoDB (Clerk waits: CLERK_SECRET_KEY is unset)")
        say(f"{user['clerkId']} ({user['email'] or 'no email'}) {role} in {where}.")


IdArgument = Annotated[str, typer.Argument(metavar="ID", help="Clerk id, Mongo id or email.")]


def promote(ctx: typer.Context, ident: IdArgument, json: JsonOption = False) -> None:
    """Give a user admin rights, in MongoDB and in Clerk's publicMetadata."""
    _set_admin(ctx, ident, True, json)


def demote(ctx: typer.Context, ident: IdArgument, json: JsonOption = False) -> None:
    """Take a user's admin rights away, in MongoDB and in Clerk's publicMetadata."""
    _set_admin(ctx, ident, False, json)


def reconcile(
    ctx: typer.Context,
    dry_run: DryRunOption = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete orphans (in MongoDB, not in Clerk).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before pruning.")] = False,
    allow_mass_prune: Annotated[
        bool,
        typer.Option(
            "--allow-mass-prune",
            help="Prune even when Clerk lists no users, or over 10% of the users would go.",
        ),
    ] = False,
    undo_prune: Annotated[
        str | None,
        typer.Option(
            "--undo-prune",
            metavar="RUN",
            help="Put back the users, organizations and memberships a prune run deleted "
            "(its id is printed by --prune).",
        ),
    ] = None,
    rebind: RebindOption = False,
    rate: RateOption = None,
    json: JsonOption = False,
) -> None:
    """Find the Clerk users, organizations and memberships the database missed, and fix them;
    report orphans.

    Pages through every Clerk user (500 a page, by cursor), then the instance's
    organizations and memberships (500 a page), and applies the receiver's
    mapping and ordering rules in bulk: creates the missing, updates the stale,
    leaves the newer alone. Refuses (exit 2) when the key is for another Clerk
    instance than the database's, until --rebind. --prune refuses (exit 1,
    nothing deleted, of any kind) when Clerk lists no users, organizations or
    memberships, or over 10% of one kind would go, unless --allow-mass-prune;
    every prune can be undone with --undo-prune RUN (what was deleted for real
    since stays deleted).
    """
    from clerksync.errors import UsageError
    from clerksync.jobs.reconcile import reconcile as run

    if undo_prune is not None:
        _undo_prune(ctx, undo_prune, json)
        return
    if prune and json and not yes and not dry_run:
        raise UsageError("--prune with --json needs --yes (there is no one to ask)")
    store = open_store(ctx, indexes=True)
    clerk = gateway(ctx)
    assert clerk is not None
    options: dict[str, Any] = {
        "rate": rate_for(ctx, rate),
        "allow_mass_prune": allow_mass_prune,
        "rebind": rebind,
    }
    if prune and not yes and not dry_run:
        # Count first, then ask: nothing is deleted unless the person says so.
        preview = run(store, clerk, dry_run=True, prune=True, **options)
        refused = preview.refusals()
        if refused:
            say(f"Refusing to prune: {refused}")
            raise typer.Exit(1)
        orphaned = _orphan_counts(preview)
        if orphaned and not typer.confirm(
            f"Delete {orphaned} from MongoDB (Clerk does not know them)?", err=True
        ):
            prune = False
    with progress_bar("reconcile", json) as progress:
        result = run(store, clerk, dry_run=dry_run, prune=prune, progress=progress, **options)
    if json:
        print_json(result.to_json())
        if result.refusals():
            raise typer.Exit(1)
        return
    _say_reconciled(result)
    if result.prune_run:
        say(
            f"Prune run {result.prune_run}: undo it with "
            f"`clerksync reconcile --undo-prune {result.prune_run}` (kept 30 days)"
        )
    refused = result.refusals()
    if refused:
        say(f"Refusing to prune: {refused}")
        raise typer.Exit(1)


def _say_reconciled(result: "ReconcileResult") -> None:
    """One line per kind, in the registry's order, and its orphans on stdout."""
    from clerksync.kinds.registry import BY_NAME
    from clerksync.kinds.user import USER

    def did(verb: str, past: str, count: int) -> str:
        return f"{'would ' + verb if result.dry_run else past} {count}"

    for name, part in result.kinds.items():
        kind = BY_NAME[name]
        if part.note:
            say(f"{kind.plural}: {part.note}")
            continue
        head = f"Clerk {part.clerk} {kind.plural}, MongoDB {part.mongo}"
        counts = [did("create", "created", part.created), did("update", "updated", part.updated)]
        if kind is USER:  # the users' own: the app's documents taken over
            counts.append(did("adopt", "adopted", part.adopted))
        counts += [
            f"unchanged {part.unchanged}",
            f"orphaned {part.orphaned}",
            f"pruned {part.pruned}",
        ]
        if part.invalid:
            counts.append(f"{part.invalid} invalid (no valid id or updated_at)")
        say(f"{head if kind is USER else kind.plural + ': ' + head}: " + ", ".join(counts))
        for clerk_id in part.orphans:
            typer.echo(f"orphan: {cell(clerk_id)}")


def _undo_prune(ctx: typer.Context, run_id: str, json: bool) -> None:
    from clerksync.jobs.undo import undo_prune

    result = undo_prune(open_store(ctx, indexes=True), run_id)
    if json:
        print_json(result)
        return
    from clerksync.kinds.registry import KINDS

    restored = (
        ", ".join(
            f"{n} {k.name if n == 1 else k.plural}"
            for k in KINDS
            if (n := result[k.plural]["restored"])
        )
        or "nothing"
    )
    extra = [
        f"{result['present']} were back already",
        f"{result['tombstones_removed']} tombstones removed",
    ]
    if result["deleted_since"]:
        extra.append(f"{result['deleted_since']} left deleted (deleted for real since the prune)")
    if result["already_undone"]:
        extra.append(f"{result['already_undone']} undone by an earlier --undo-prune")
    if result["waiting"]:
        extra.append(
            f"{result['waiting']} waiting for their user or organization (refused above, or "
            "pruned again by a later run: undo that one first, then rerun this)"
        )
    say(f"Prune run {run_id} undone: restored {restored}; " + ", ".join(extra))


def _orphan_counts(result: "ReconcileResult") -> str:
    """ "3 users, 1 organization, 2 memberships", or "" when there are none."""
    from clerksync.kinds.registry import BY_NAME

    return ", ".join(
        f"{n} {name if n == 1 else BY_NAME[name].plural}"
        for name, part in result.kinds.items()
        if (n := part.orphaned)
    )
