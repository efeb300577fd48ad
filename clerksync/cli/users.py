"""``clerksync users list|show``: what the database holds."""

from typing import Annotated, Any

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

app = typer.Typer(help="What the database holds: list and show users.", no_args_is_help=True)

#: (key, heading); the Mongo id and picture are in `users show` and --json
COLUMNS = (
    ("clerkId", "clerk id"),
    ("email", "email"),
    ("name", "name"),
    ("username", "username"),
    ("isAdmin", "admin"),
    ("created", "created"),
)


def table_row(view: dict[str, Any]) -> dict[str, Any]:
    name = " ".join(part for part in (view["firstName"], view["lastName"]) if part)
    created = view["createdAt"]  # an ISO string, or whatever odd value the app wrote there
    day = created[:10] if isinstance(created, str) and created[:4].isdigit() else created
    return {**view, "name": name or None, "created": day}


@app.command("list")
def list_users(
    ctx: typer.Context,
    admins: Annotated[bool, typer.Option("--admins", help="Only admins.")] = False,
    search: Annotated[
        str | None,
        typer.Option("--search", metavar="TEXT", help="Match email, names or username (any case)."),
    ] = None,
    plan: Annotated[
        str | None,
        typer.Option(
            "--plan", metavar="SLUG", help="Only users on this plan (from Clerk Billing)."
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", metavar="N", min=1, help="At most N users.")
    ] = None,
    json: JsonOption = False,
) -> None:
    """List the users in MongoDB, newest first."""
    from clerksync.mapping.users import public_view
    from clerksync.store.lookups import list_users

    store = open_store(ctx)
    found = list_users(store, admins=admins, search=search, plan=plan, limit=limit)
    rows = [public_view(doc, store.schema.users) for doc in found]
    if json:
        print_json(rows)
        return
    print_table(
        [table_row(r) for r in rows],
        COLUMNS,
        f"{plural(len(rows), 'user')} in {store.name!r}",
        keep=("clerkId", "email"),  # what a person copies: never cut, wrapped if it must
        drop=("username", "created", "name", "isAdmin"),
    )


@app.command("show")
def show_user(
    ctx: typer.Context,
    ident: Annotated[str, typer.Argument(metavar="ID", help="Clerk id, Mongo id or email.")],
    json: JsonOption = False,
) -> None:
    """Show one user by Clerk id, Mongo id or email."""
    from rich import box
    from rich.table import Table

    from clerksync.store.lookups import find_user, user_detail

    store = open_store(ctx)
    detail = user_detail(store, find_user(store, ident))
    organizations = detail.pop("organizations")
    view = detail
    if json:
        print_json({**view, "organizations": organizations})
        return
    table = Table(show_header=False, box=box.SIMPLE, pad_edge=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in view.items():
        # a table's blank reads "no" in a column of ✓; alone, a blank reads "unknown"
        table.add_row(key, text("no") if value is False else text(value))
    print_rendered(table)
    if organizations:
        title = plural(len(organizations), "organization")
        print_table(
            organizations,
            (
                ("organizationId", "organization"),
                ("name", "name"),
                ("slug", "slug"),
                ("role", "role"),
            ),
            title,
        )
