"""Env files and variables: each one present, well-formed and of the right kind."""

from __future__ import annotations

from pathlib import Path

from clerksync.clerk.keys import DEFAULT_API_URL, instance_kind
from clerksync.doctor.checks import Check, info, ok
from clerksync.doctor.receiver import FORWARD_HINT, dev_receiver, unreachable_from_clerk
from clerksync.settings import WHERE, Settings, mask


def check_env_files(settings: Settings) -> list[Check]:
    """Which env files were read (those of the working folder, or of the project's root:
    ``clerksync.statedir.env_files``), or where none was found."""
    from clerksync.statedir import project_folders

    checks = []
    if settings.env_files:
        checks.append(ok("env files", "read " + ", ".join(str(p) for p in settings.env_files)))
    else:
        folders = project_folders(Path.cwd())
        where = str(folders[0])
        if len(folders) > 1:
            where += f" or up to the project's root {folders[-1]}"
        checks.append(
            Check(
                "env files",
                "info" if settings.uses_embedded_store else "warn",
                f"no .env.local or .env in {where}; using the process environment only",
                "put your settings in .env.local at your project's root (see .env.example), "
                "or pass --env-file",
            )
        )
    for found, meant in settings.misnamed:
        checks.append(
            Check(
                found,
                "warn",
                f"is set, but clerksync does not read it (and {meant} is unset)",
                f"did you mean {meant}? Rename it in your env file",
            )
        )
    return checks


def check_variables(settings: Settings) -> list[Check]:
    problems = dict(settings.problems())
    checks: list[Check] = []
    local = settings.uses_embedded_store  # a local demo: unset keys are expected there
    running = dev_receiver(settings)
    from clerksync.devtools.localstate import read_dev_secret

    kept_secret = read_dev_secret(settings.state_dir)

    def var(name: str, shown: str, unset: Check | None) -> None:
        value = settings.value(name)
        if not value:
            if unset is not None:
                checks.append(unset)
        elif name in problems:
            checks.append(
                Check(
                    name,
                    "fail",
                    f"{shown}, but {problems[name]}",
                    f"fix it in {settings.origins.get(name, '.env.local')} — {WHERE[name]}",
                )
            )
        else:
            checks.append(ok(name, shown))

    var(
        "MONGODB_URL",
        "set",
        info(
            "MONGODB_URL",
            f"unset: using the embedded store in {settings.state_dir}/ (local use only)",
            "set MONGODB_URL in .env.local to your app's database",
        ),
    )
    var(
        "CLERK_SECRET_KEY",
        mask(settings.clerk_secret_key),
        Check(
            "CLERK_SECRET_KEY",
            "info" if local else "warn",
            "unset: users are stored, write-backs wait",
            f"set CLERK_SECRET_KEY in .env.local — {WHERE['CLERK_SECRET_KEY']}",
        ),
    )
    var(
        "WEBHOOK_SECRET",
        mask(settings.webhook_secret),
        (
            ok(
                "WEBHOOK_SECRET",
                f"unset; the running `serve --dev` at {running['url']} uses its local secret "
                f"{mask(running['secret'])}",
            )
            if running and running["dev"] and running["secret"]
            else info(
                "WEBHOOK_SECRET",
                f"unset; `clerksync serve --dev` uses this machine's local secret "
                f"{mask(kept_secret)} (not running now)",
                "start the demo with `clerksync serve --dev`; for Clerk's own deliveries, set "
                f"WEBHOOK_SECRET — {WHERE['WEBHOOK_SECRET']}",
            )
            if local and kept_secret
            else Check(
                "WEBHOOK_SECRET",
                "fail",
                "unset: no delivery can be verified",
                f"set WEBHOOK_SECRET in .env.local — copy it from {WHERE['WEBHOOK_SECRET']} "
                "(or run `clerksync serve --dev` for a local secret)",
            )
        ),
    )
    var(
        "NEXT_PUBLIC_URL",
        settings.public_url or "",
        Check(
            "NEXT_PUBLIC_URL",
            "info" if local else "warn",
            "unset: cannot derive the webhook endpoint Clerk must post to",
            "set NEXT_PUBLIC_URL to your app's public base URL; to receive Clerk's deliveries "
            "on this machine, see `clerk webhooks listen` in docs/receiver.md",
        ),
    )
    if settings.public_url and "NEXT_PUBLIC_URL" not in problems:
        why = unreachable_from_clerk(settings.public_url)
        if why:
            checks[-1] = Check(
                "NEXT_PUBLIC_URL", "warn", f"{settings.public_url}: {why}", FORWARD_HINT
            )
    var("NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY", mask(settings.publishable_key), None)
    var("MONGODB_DB", settings.mongodb_db or "", None)
    var("CLERK_JWT_KEY", "a PEM public key (session tokens verified without Clerk)", None)
    var("CLERK_AUTHORIZED_PARTIES", settings.authorized_parties or "", None)
    if settings.clerk_api_url != DEFAULT_API_URL:
        var("CLERK_API_URL", settings.clerk_api_url, None)
    if settings.publishable_key and "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY" not in problems:
        pk = instance_kind(settings.publishable_key)
        sk = instance_kind(settings.clerk_secret_key)
        if sk and pk != sk:
            checks.append(
                Check(
                    "key pair",
                    "fail",
                    f"publishable key is pk_{pk}_, secret key is sk_{sk}_: different instances",
                    "copy both keys from the same instance: Dashboard → Configure → API keys",
                )
            )
        else:
            checks.append(
                ok("key pair", f"{mask(settings.publishable_key)} matches the secret key")
            )
    return checks
