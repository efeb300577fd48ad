"""``clerksync doctor``: check config, MongoDB, the Clerk key and the webhook endpoint."""

import typer

from clerksync.cli.common import JsonOption, print_json, state, stdout

MARKS = {"pass": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red")}


def doctor(ctx: typer.Context, json: JsonOption = False) -> None:
    """Check the whole chain (config, MongoDB, Clerk key, webhook secret and endpoint).

    Exits 0 when nothing fails (warnings allowed), 1 otherwise.
    """
    from rich.text import Text

    from clerksync.doctor import doctor_ok, run_doctor

    checks = run_doctor(state(ctx).settings)
    healthy = doctor_ok(checks)
    if json:
        print_json({"ok": healthy, "checks": [c.to_json() for c in checks]})
    else:
        console = stdout()
        for check in checks:
            mark, color = MARKS[check.status]
            line = Text(f"{mark} ", style=color)
            line.append(f"{check.name}: ", style="bold")
            line.append(check.detail)
            console.print(line)
            if check.hint:
                console.print(Text(f"    fix: {check.hint}", style="dim"))
        console.print("All checks passed." if healthy else "Some checks failed.")
    if not healthy:
        raise typer.Exit(1)
