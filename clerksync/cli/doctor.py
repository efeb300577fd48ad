"""``clerksync doctor``: check config, MongoDB, the Clerk key and the webhook endpoint."""

import typer

from clerksync.cli.common import JsonOption, cell, print_json, print_rendered, state

MARKS = {
    "pass": ("✓", "green"),
    "info": ("·", "blue"),
    "warn": ("!", "yellow"),
    "fail": ("✗", "red"),
}


def doctor(ctx: typer.Context, json: JsonOption = False) -> None:
    """Check the whole chain and say what to fix.

    Config, MongoDB, the Clerk key, the webhook secret, endpoint and receiver.
    Exits 0 when nothing fails (warnings and notes allowed), 1 otherwise.
    """
    from rich.text import Text

    from clerksync.doctor import doctor_ok, run_doctor

    checks = run_doctor(state(ctx).settings)
    healthy = doctor_ok(checks)
    if json:
        print_json({"ok": healthy, "checks": [c.to_json() for c in checks]})
    else:
        from rich.table import Table

        shown: list[object] = []
        for check in checks:
            # a grid, so a long detail or fix wraps under its own text, not under the mark
            grid = Table.grid(padding=(0, 1))
            grid.add_column(no_wrap=True)
            grid.add_column(overflow="fold")
            mark, color = MARKS[check.status]
            line = Text()
            line.append(f"{cell(check.name)}: ", style="bold")
            line.append(cell(check.detail))  # names emails, ids, errors: data, escaped
            grid.add_row(Text(mark, style=color), line)
            if check.hint:
                label = "note" if check.status == "info" else "fix"
                grid.add_row("", Text(f"{label}: {cell(check.hint)}", style="dim"))
            shown.append(grid)
            # one line each, never hard-wrapped: copied and run as they are
            shown += [f"    {cell(command)}" for command in check.commands]
        shown.append("All checks passed." if healthy else "Some checks failed.")
        print_rendered(*shown)
    if not healthy:
        raise typer.Exit(1)
