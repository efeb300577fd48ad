"""Settings: loaded once from the process env, ``.env.local`` and ``.env``.

Precedence follows Next.js, so one set of files serves the app and clerksync:
the process environment wins, then ``.env.local``, then ``.env`` of the working folder
or, from a subfolder, of the project's root (``clerksync.statedir.env_files``: where its
``.clerksync`` is found). ``--env-file PATH`` replaces the two files.

Values are kept as given; each command checks only what it needs
(``Settings.require``) so ``doctor`` can report a malformed value as a failing
check while every other command stops with one line and exit 2. The validators are
``clerksync.settings.checks``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from clerksync.clerk.keys import DEFAULT_API_URL
from clerksync.errors import ConfigError
from clerksync.mapping.files import load_schema
from clerksync.mapping.schema import DEFAULT as DEFAULT_SCHEMA
from clerksync.mapping.schema import Schema
from clerksync.settings.checks import (
    check_authorized_parties,
    check_database_name,
    check_http_url,
    check_jwt_key,
    check_mongodb_url,
    check_publishable_key,
    check_secret_key,
    check_webhook_secret,
)
from clerksync.statedir import default_state_dir, env_files

__all__ = [
    "Settings",
    "check_http_url",
    "check_webhook_secret",
    "load_settings",
    "mask",
]

WEBHOOK_PATH = "/api/webhooks/clerk"

#: variable -> aliases, in the order they are looked up.
ALIASES: dict[str, tuple[str, ...]] = {
    "MONGODB_URL": ("MONGODB_URL", "MONGODB_URI"),
    "WEBHOOK_SECRET": ("WEBHOOK_SECRET", "CLERK_WEBHOOK_SECRET", "CLERK_WEBHOOK_SIGNING_SECRET"),
}

#: every name clerksync reads (aliases included): anything else close to one is a likely typo
KNOWN_NAMES = (
    "MONGODB_URL",
    "MONGODB_URI",
    "MONGODB_DB",
    "CLERK_SECRET_KEY",
    "CLERK_API_URL",
    "WEBHOOK_SECRET",
    "CLERK_WEBHOOK_SECRET",
    "CLERK_WEBHOOK_SIGNING_SECRET",
    "NEXT_PUBLIC_URL",
    "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY",
    "CLERKSYNC_HOME",
    "CLERKSYNC_PAYLOAD_TTL_DAYS",
    "CLERKSYNC_MONGO_TIMEOUT_MS",
    "CLERKSYNC_SCHEMA",
    "CLERKSYNC_EMBEDDED_IDLE_SECONDS",
    "CLERK_JWT_KEY",
    "CLERK_AUTHORIZED_PARTIES",
)

#: names people reach for that clerksync does not read -> the one it reads
LIKELY_MEANT = {
    "MONGO_URL": "MONGODB_URL",
    "MONGO_URI": "MONGODB_URL",
    "MONGODB_CONNECTION_STRING": "MONGODB_URL",
    "MONGODB_DATABASE": "MONGODB_DB",
    "MONGO_DB": "MONGODB_DB",
    "CLERK_API_KEY": "CLERK_SECRET_KEY",
    "CLERK_SECRET": "CLERK_SECRET_KEY",
    "CLERK_KEY": "CLERK_SECRET_KEY",
    "CLERK_BACKEND_API_KEY": "CLERK_SECRET_KEY",
    "SVIX_SECRET": "WEBHOOK_SECRET",
    "WEBHOOK_SIGNING_SECRET": "WEBHOOK_SECRET",
    "SIGNING_SECRET": "WEBHOOK_SECRET",
    "CLERK_PUBLISHABLE_KEY": "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY",
    "PUBLIC_URL": "NEXT_PUBLIC_URL",
    "APP_URL": "NEXT_PUBLIC_URL",
    "NEXT_PUBLIC_APP_URL": "NEXT_PUBLIC_URL",
    "NEXT_PUBLIC_SITE_URL": "NEXT_PUBLIC_URL",
    "NEXT_PUBLIC_BASE_URL": "NEXT_PUBLIC_URL",
    "CLERK_PEM_PUBLIC_KEY": "CLERK_JWT_KEY",
    "CLERK_JWT_PUBLIC_KEY": "CLERK_JWT_KEY",
    "CLERK_PUBLIC_KEY": "CLERK_JWT_KEY",
    "CLERK_AUTHORIZED_PARTY": "CLERK_AUTHORIZED_PARTIES",
    "AUTHORIZED_PARTIES": "CLERK_AUTHORIZED_PARTIES",
}

#: prefixes worth a typo check; the rest of a process environment (PATH, HOME…) is not ours
_TYPO_PREFIXES = ("MONGO", "CLERK", "WEBHO", "NEXT_PUBLIC_", "SVIX", "AUTHORIZED")

WHERE = {
    "MONGODB_URL": "your MongoDB connection string (Atlas: Connect → Drivers)",
    "CLERK_SECRET_KEY": "Clerk Dashboard → Configure → API keys → Secret keys",
    "WEBHOOK_SECRET": "Clerk Dashboard → Webhooks → your endpoint → Signing Secret",
    "NEXT_PUBLIC_URL": "the public base URL of your app, e.g. https://example.com",
    "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY": "Clerk Dashboard → Configure → API keys",
    "CLERK_API_URL": "leave unset for https://api.clerk.com/v1",
    "MONGODB_DB": "the database name, when MONGODB_URL names none",
    "CLERK_JWT_KEY": "Clerk Dashboard → Configure → API keys → Show JWT public key → PEM",
    "CLERK_AUTHORIZED_PARTIES": "your app's origins, comma-separated, e.g. https://example.com",
}


def mask(secret: str | None) -> str:
    """Show enough of a secret to recognise it, never enough to use it: ``sk_test_…a1b2``."""
    if not secret:
        return "(unset)"
    for prefix in ("sk_test_", "sk_live_", "pk_test_", "pk_live_", "whsec_"):
        if secret.startswith(prefix):
            return f"{prefix}…{secret[-4:]}" if len(secret) > len(prefix) + 8 else f"{prefix}…"
    return f"…{secret[-4:]}" if len(secret) > 12 else "…"


VALIDATORS: dict[str, Callable[[str], str | None]] = {
    "MONGODB_URL": check_mongodb_url,
    "CLERK_SECRET_KEY": check_secret_key,
    "WEBHOOK_SECRET": check_webhook_secret,
    "NEXT_PUBLIC_URL": check_http_url,
    "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY": check_publishable_key,
    "CLERK_API_URL": check_http_url,
    "MONGODB_DB": check_database_name,
    "CLERK_JWT_KEY": check_jwt_key,
    "CLERK_AUTHORIZED_PARTIES": check_authorized_parties,
}


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything clerksync reads from the environment, loaded once and never mutated."""

    mongodb_url: str | None = None
    mongodb_db: str | None = None
    clerk_secret_key: str | None = None
    clerk_api_url: str = DEFAULT_API_URL
    webhook_secret: str | None = None
    public_url: str | None = None
    publishable_key: str | None = None
    #: the instance's PEM public key: session tokens verified without a network call
    clerk_jwt_key: str | None = None
    #: comma-separated origins a session token's ``azp`` must be one of (as given)
    authorized_parties: str | None = None
    #: where the embedded store, the dev secret and other local state live
    state_dir: Path = Path(".clerksync")
    #: days a delivery's payload is kept for replay (personal data expires)
    payload_ttl_days: float = 7.0
    #: how long a MongoDB operation may wait for a server, in ms
    mongo_timeout_ms: int = 3000
    #: seconds the embedded store's daemon waits without a client before it stops
    embedded_idle_seconds: float = 900.0
    #: the app's schema (``CLERKSYNC_SCHEMA``): collection and field names
    schema: Schema = DEFAULT_SCHEMA
    #: env files that were read, in precedence order (for doctor)
    env_files: tuple[Path, ...] = field(default_factory=tuple)
    #: (name set, name clerksync reads): likely typos, reported as "did you mean"
    misnamed: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    #: where each set variable's value came from: an env file, or the process environment
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def webhook_url(self) -> str | None:
        """The endpoint Clerk must post to, derived from ``NEXT_PUBLIC_URL``."""
        if not self.public_url:
            return None
        return self.public_url.rstrip("/") + WEBHOOK_PATH

    @property
    def uses_embedded_store(self) -> bool:
        return not self.mongodb_url

    @property
    def authorized_origins(self) -> list[str] | None:
        """``CLERK_AUTHORIZED_PARTIES`` as a list (None: any party is accepted)."""
        if not self.authorized_parties:
            return None
        return [p.strip().rstrip("/") for p in self.authorized_parties.split(",") if p.strip()]

    def value(self, name: str) -> str | None:
        return {
            "MONGODB_URL": self.mongodb_url,
            "CLERK_SECRET_KEY": self.clerk_secret_key,
            "WEBHOOK_SECRET": self.webhook_secret,
            "NEXT_PUBLIC_URL": self.public_url,
            "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY": self.publishable_key,
            "CLERK_API_URL": self.clerk_api_url,
            "MONGODB_DB": self.mongodb_db,
            "CLERK_JWT_KEY": self.clerk_jwt_key,
            "CLERK_AUTHORIZED_PARTIES": self.authorized_parties,
        }[name]

    def problems(self, *names: str) -> list[tuple[str, str]]:
        """The set variables among ``names`` (default: all) that are malformed: (name, problem)."""
        found = []
        for name, check in VALIDATORS.items():
            if names and name not in names:
                continue
            value = self.value(name)
            if value:
                problem = check(value)
                if problem:
                    found.append((name, problem))
        return found

    def check(self, *names: str) -> None:
        """ConfigError (exit 2) if one of ``names`` is set but malformed.

        Each command checks only the variables it reads, so a broken
        ``WEBHOOK_SECRET`` does not stop ``users list``.
        """
        for name, problem in self.problems(*names):
            where = self.origins.get(name, ".env.local")
            raise ConfigError(f"{name} {problem}. Fix it in {where}: {WHERE[name]}.")

    def require(self, *names: str, hint: str = "") -> None:
        """``check(*names)``, then ConfigError (exit 2) for the first of ``names`` unset.

        Without names, every variable is checked (what ``doctor`` reports as failures).
        """
        self.check(*names)
        for name in names:
            if not self.value(name):
                raise ConfigError(f"{name} is not set. Set it in .env.local — {WHERE[name]}{hint}.")


def _read_env_file(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    try:
        values = dotenv_values(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read env file {path}: {exc.__class__.__name__}") from None
    return {k: v for k, v in values.items() if v is not None}


def load_settings(
    *,
    env_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Merge the process env over the env files and build the frozen Settings.

    ``environ`` and ``cwd`` are for tests; by default the real ones are used.
    """
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    if env_file is not None:
        if not env_file.is_file():
            raise ConfigError(f"--env-file {env_file}: no such file")
        files = [env_file]
    else:
        files = list(env_files(cwd))

    merged: dict[str, str] = {}
    came_from: dict[str, str] = {}  # variable -> where its value was read
    for path in reversed(files):  # lowest precedence first
        values = _read_env_file(path)
        merged.update(values)
        shown = f"--env-file {path}" if env_file is not None else path.name
        came_from.update(dict.fromkeys(values, shown))
    merged.update({k: v for k, v in environ.items()})
    came_from.update(dict.fromkeys(environ, "the process environment"))
    misnamed = likely_typos(merged)
    origins: dict[str, str] = {}

    def get(name: str) -> str | None:
        for alias in ALIASES.get(name, (name,)):
            value = merged.get(alias, "").strip()
            if value:
                origins[name] = came_from[alias]
                return value
        return None

    def number(name: str, default: float, largest: float) -> float:
        raw = get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw[:40]!r}") from None
        if not 0 < value <= largest:  # also refuses nan and inf
            raise ConfigError(f"{name} must be a number above 0 and at most {largest:g}")
        return value

    # a relative mapping file is read from the folder of the env file that names it (the
    # project's root, from a subfolder too), or the working folder when the process env does
    schema_base = cwd
    if files and not environ.get("CLERKSYNC_SCHEMA", "").strip():
        schema_base = next(
            (p.parent for p in files if _read_env_file(p).get("CLERKSYNC_SCHEMA")), cwd
        )
    home = get("CLERKSYNC_HOME")
    state_dir = Path(home) if home else default_state_dir(cwd)
    if state_dir.exists() and not state_dir.is_dir():
        raise ConfigError(f"CLERKSYNC_HOME {state_dir} is a file: it must name a folder")
    return Settings(
        mongodb_url=get("MONGODB_URL"),
        mongodb_db=get("MONGODB_DB"),
        clerk_secret_key=get("CLERK_SECRET_KEY"),
        clerk_api_url=get("CLERK_API_URL") or DEFAULT_API_URL,
        webhook_secret=get("WEBHOOK_SECRET"),
        public_url=get("NEXT_PUBLIC_URL"),
        publishable_key=get("NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY"),
        clerk_jwt_key=pem(get("CLERK_JWT_KEY")),
        authorized_parties=get("CLERK_AUTHORIZED_PARTIES"),
        state_dir=state_dir,
        payload_ttl_days=number("CLERKSYNC_PAYLOAD_TTL_DAYS", 7.0, 3650),
        mongo_timeout_ms=int(number("CLERKSYNC_MONGO_TIMEOUT_MS", 3000, 600_000)),
        embedded_idle_seconds=number("CLERKSYNC_EMBEDDED_IDLE_SECONDS", 900, 7 * 86400),
        schema=load_schema(get("CLERKSYNC_SCHEMA"), cwd=schema_base),
        env_files=tuple(files),
        misnamed=misnamed,
        origins=origins,
    )


def pem(value: str | None) -> str | None:
    """A PEM as an env var holds it: line breaks written ``\\n`` (one line in a process
    environment or a container's settings) become real ones."""
    return value.replace("\\n", "\n") if value else value


def likely_typos(values: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Set names that clerksync does not read but probably should: ``MONGO_URL`` → ``MONGODB_URL``.

    Only reported while the name meant is unset (with its aliases): a stray
    variable beside a correct one is none of our business.
    """
    import difflib

    def is_set(name: str) -> bool:
        return any(values.get(alias, "").strip() for alias in ALIASES.get(name, (name,)))

    found: list[tuple[str, str]] = []
    for key in sorted(values):
        if key in KNOWN_NAMES or not values[key].strip():
            continue
        meant = LIKELY_MEANT.get(key)
        if meant is None and key.startswith(_TYPO_PREFIXES):
            close = difflib.get_close_matches(key, KNOWN_NAMES, n=1, cutoff=0.85)
            meant = close[0] if close else None
        if meant is not None:
            canonical = next((n for n, a in ALIASES.items() if meant in a), meant)
            if not is_set(canonical):
                found.append((key, canonical))
    return tuple(found)
