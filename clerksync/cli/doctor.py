"""``clerksync doctor``: check config, MongoDB, the Clerk key and the webhook endpoint."""

import typer

from clerksync.cli.common import JsonOption, print_json, safe, state, stdout

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
        console = stdout()
        for check in checks:
            mark, color = MARKS[check.status]
            line = Text(f"{mark} ", style=color)
            line.append(f"{safe(check.name)}: ", style="bold")
            line.append(safe(check.detail))
            console.print(line)
            if check.hint:
                label = "note" if check.status == "info" else "fix"
                console.print(Text(f"    {label}: {safe(check.hint)}", style="dim"))
        console.print("All checks passed." if healthy else "Some checks failed.")
    if not healthy:
        raise typer.Exit(1)
