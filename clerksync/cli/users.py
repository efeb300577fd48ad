"""``clerksync users list|show``: what the database holds."""

from typing import Annotated

import typer

from clerksync.cli.common import JsonOption, open_store, print_json, print_table, stdout

app = typer.Typer(help="What the database holds.", no_args_is_help=True)

COLUMNS = ("id", "clerkId", "email", "firstName", "lastName", "username", "isAdmin", "createdAt")


@app.command("list")
def list_users(
    ctx: typer.Context,
    admins: Annotated[bool, typer.Option("--admins", help="Only admins.")] = False,
    search: Annotated[
        str | None, typer.Option("--search", help="Match email, names or username (any case).")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most N users.")] = None,
    json: JsonOption = False,
) -> None:
    """List the users in MongoDB, newest first."""
    from clerksync.users import public_view

    store = open_store(ctx)
    found = store.list_users(admins=admins, search=search, limit=limit)
    rows = [public_view(doc, store.schema) for doc in found]
    if json:
        print_json(rows)
        return
    print_table(rows, COLUMNS, f"{len(rows)} users in {store.name!r}")


@app.command("show")
def show_user(
    ctx: typer.Context,
    ident: Annotated[str, typer.Argument(metavar="ID", help="Clerk id, Mongo id or email.")],
    json: JsonOption = False,
) -> None:
    """Show one user by Clerk id, Mongo id or email."""
    from rich.table import Table

    from clerksync.orgstore import user_organizations
    from clerksync.users import public_view

    store = open_store(ctx)
    view = public_view(store.find_user(ident), store.schema)
    organizations = user_organizations(store, str(view["clerkId"]))
    if json:
        print_json({**view, "organizations": organizations})
        return
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in view.items():
        table.add_row(key, "" if value is None else str(value))
    stdout().print(table)
    if organizations:
        title = f"{len(organizations)} organizations"
        print_table(organizations, ("organizationId", "name", "slug", "role"), title)
