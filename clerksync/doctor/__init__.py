"""``clerksync doctor``: check every link of the chain and say what to fix.

Each check returns a ``Check`` with a status and, when it is not a pass, one
concrete fix. Network checks run in parallel with short timeouts so the whole
run stays well under 15 s even when nothing answers. Nothing here prints a
secret: keys appear masked.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from clerksync.doctor.checks import Check, ok
from clerksync.doctor.clerk import check_clerk, check_kind_counts
from clerksync.doctor.config import check_env_files, check_variables
from clerksync.doctor.database import check_mongodb
from clerksync.doctor.receiver import check_webhook
from clerksync.settings import Settings

__all__ = ["Check", "doctor_ok", "run_doctor"]


def _guarded(group: str, run: Any, settings: Settings) -> Any:
    """Run a group of checks; an error nobody foresaw becomes a failing check, never a traceback."""
    try:
        return run(settings)
    except Exception as exc:
        failed = [Check(group, "fail", f"could not check: {exc.__class__.__name__}", "")]
        return (
            (failed, None, None)
            if group == "MongoDB"
            else ((failed, None) if group == "Clerk API" else failed)
        )


def run_doctor(settings: Settings, *, probes: bool = True) -> list[Check]:
    """All checks, in a stable order. Network groups run in parallel."""
    checks = check_env_files(settings) + check_variables(settings)
    with ThreadPoolExecutor(max_workers=4) as pool:
        mongo = pool.submit(_guarded, "MongoDB", check_mongodb, settings)
        clerk = pool.submit(_guarded, "Clerk API", check_clerk, settings)
        counts = pool.submit(check_kind_counts, settings)
        hooks = pool.submit(_guarded, "receiver", check_webhook, settings) if probes else None
        mongo_checks, mongo_users, pending = mongo.result()
        clerk_checks, clerk_users = clerk.result()
        webhook_checks = hooks.result() if hooks else []
    checks += mongo_checks + clerk_checks
    if mongo_users is not None and clerk_users is not None:
        if mongo_users == clerk_users:
            checks.append(ok("user counts", f"Clerk {clerk_users}, MongoDB {mongo_users}"))
        else:
            checks.append(
                Check(
                    "user counts",
                    "warn",
                    f"Clerk {clerk_users}, MongoDB {mongo_users}",
                    "run `clerksync reconcile` to bring MongoDB in line",
                    ("clerksync reconcile",),
                )
            )
    checks += counts.result()
    if pending:
        waiting = "" if settings.clerk_secret_key else " (CLERK_SECRET_KEY is unset)"
        checks.append(
            Check(
                "write-backs",
                "info"
                if settings.uses_embedded_store and not settings.clerk_secret_key
                else "warn",
                f"{pending} metadata write-back{'' if pending == 1 else 's'} pending{waiting}",
                "they run while `clerksync serve` runs with CLERK_SECRET_KEY set; "
                "`clerksync sync-metadata` finishes them now",
                ("clerksync sync-metadata",) if settings.clerk_secret_key else (),
            )
        )
    elif pending == 0:
        checks.append(ok("write-backs", "none pending"))
    return checks + webhook_checks


def doctor_ok(checks: list[Check]) -> bool:
    return all(c.status != "fail" for c in checks)
