"""``clerksync orgs list|show``: the organizations and memberships the database holds."""

from typing import Annotated

import typer

from clerksync.cli.common import (
    JsonOption,
    open_store,
    plural,
    print_json,
    print_rendered,
    print_table,
    text,
)

app = typer.Typer(help="The organizations the database holds.", no_args_is_help=True)

COLUMNS = (
    ("id", "id"),
    ("clerkId", "clerk id"),
    ("name", "name"),
    ("slug", "slug"),
    ("members", "members"),
)


@app.command("list")
def list_orgs(
    ctx: typer.Context,
    limit: Annotated[
        int | None, typer.Option("--limit", metavar="N", min=1, help="At most N.")
    ] = None,
    json: JsonOption = False,
) -> None:
    """List organizations, newest first, with member counts."""
    from clerksync.store.lookups import list_organizations

    store = open_store(ctx)
    rows = list_organizations(store, limit=limit)
    if json:
        print_json(rows)
        return
    print_table(
        rows, COLUMNS, f"{plural(len(rows), 'organization')} in {store.name!r}", keep=("clerkId",)
    )


@app.command("show")
def show_org(
    ctx: typer.Context,
    ident: Annotated[
        str, typer.Argument(metavar="ID|SLUG", help="Clerk id (org_…), Mongo id or slug.")
    ],
    json: JsonOption = False,
) -> None:
    """Show one organization and its members.

    Each member with user id, role, and the user's email where the database has it.
    """
    from rich.table import Table

    from clerksync.store.lookups import organization_detail

    store = open_store(ctx)
    view = organization_detail(store, ident)
    if json:
        print_json(view)
        return
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in view.items():
        if key != "members":
            table.add_row(key, text(value))  # plain text, escaped: never markup or a command
    print_rendered(table)
    members = view["members"]
    print_table(
        members,
        (("userId", "user"), ("role", "role"), ("email", "email")),
        plural(len(members), "member"),
        keep=("userId",),
    )
