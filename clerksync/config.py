"""Settings: loaded once from the process env, ``.env.local`` and ``.env``.

Precedence follows Next.js, so one set of files serves the app and clerksync:
the process environment wins, then ``.env.local``, then ``.env`` in the
working folder. ``--env-file PATH`` replaces the two files.

Values are kept as given; each command checks only what it needs
(``Settings.require``) so ``doctor`` can report a malformed value as a failing
check while every other command stops with one line and exit 2.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from clerksync.errors import ConfigError
from clerksync.schema import DEFAULT as DEFAULT_SCHEMA
from clerksync.schema import Schema, load_schema

DEFAULT_API_URL = "https://api.clerk.com/v1"
DEFAULT_DB = "clerksync"
WEBHOOK_PATH = "/api/webhooks/clerk"

#: variable -> aliases, in the order they are looked up.
ALIASES: dict[str, tuple[str, ...]] = {
    "MONGODB_URL": ("MONGODB_URL", "MONGODB_URI"),
    "WEBHOOK_SECRET": ("WEBHOOK_SECRET", "CLERK_WEBHOOK_SECRET"),
}

WHERE = {
    "MONGODB_URL": "your MongoDB connection string (Atlas: Connect → Drivers)",
    "CLERK_SECRET_KEY": "Clerk Dashboard → Configure → API keys → Secret keys",
    "WEBHOOK_SECRET": "Clerk Dashboard → Webhooks → your endpoint → Signing Secret",
    "NEXT_PUBLIC_URL": "the public base URL of your app, e.g. https://example.com",
    "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY": "Clerk Dashboard → Configure → API keys",
    "CLERK_API_URL": "leave unset for https://api.clerk.com/v1",
}


def mask(secret: str | None) -> str:
    """Show enough of a secret to recognise it, never enough to use it: ``sk_test_…a1b2``."""
    if not secret:
        return "(unset)"
    for prefix in ("sk_test_", "sk_live_", "pk_test_", "pk_live_", "whsec_"):
        if secret.startswith(prefix):
            return f"{prefix}…{secret[-4:]}" if len(secret) > len(prefix) + 8 else f"{prefix}…"
    return f"…{secret[-4:]}" if len(secret) > 12 else "…"


def mask_url(url: str) -> str:
    """A connection string without its password: ``mongodb://user:…@host/db``."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":…@", 1)
        return parts._replace(netloc=netloc).geturl()
    return url


# -- validators: each returns a problem (for a one-line message) or None ------------------------


def check_mongodb_url(value: str) -> str | None:
    if not value.startswith(("mongodb://", "mongodb+srv://")):
        return "must start with mongodb:// or mongodb+srv://"
    if not urlsplit(value).hostname:
        return "has no host"
    return None


def check_secret_key(value: str) -> str | None:
    if not value.startswith(("sk_test_", "sk_live_")) or len(value) < 16:
        return "must be a Clerk secret key starting with sk_test_ or sk_live_"
    return None


def check_publishable_key(value: str) -> str | None:
    if not value.startswith(("pk_test_", "pk_live_")):
        return "must start with pk_test_ or pk_live_"
    return None


def check_webhook_secret(value: str) -> str | None:
    if not value.startswith("whsec_"):
        return "must start with whsec_ (copy the Signing Secret, not the endpoint id)"
    body = value[len("whsec_") :]
    try:
        key = base64.b64decode(body + "==", validate=True)
    except (binascii.Error, ValueError):
        return "is not valid base64 after whsec_ (was it cut when copied?)"
    if len(key) < 16:
        return "decodes to a key shorter than 16 bytes (was it cut when copied?)"
    return None


def check_http_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL"
    return None


VALIDATORS: dict[str, Callable[[str], str | None]] = {
    "MONGODB_URL": check_mongodb_url,
    "CLERK_SECRET_KEY": check_secret_key,
    "WEBHOOK_SECRET": check_webhook_secret,
    "NEXT_PUBLIC_URL": check_http_url,
    "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY": check_publishable_key,
    "CLERK_API_URL": check_http_url,
}


def instance_kind(key: str | None) -> str | None:
    """``test`` or ``live`` from an ``sk_``/``pk_`` key; None when it says neither."""
    if not key:
        return None
    for kind in ("test", "live"):
        if key.startswith((f"sk_{kind}_", f"pk_{kind}_")):
            return kind
    return None


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
    #: where the embedded store, the dev secret and other local state live
    state_dir: Path = Path(".clerksync")
    #: days a delivery's payload is kept for replay (personal data expires)
    payload_ttl_days: float = 7.0
    #: how long a MongoDB operation may wait for a server, in ms
    mongo_timeout_ms: int = 3000
    #: the app's schema (``CLERKSYNC_SCHEMA``): collection and field names, see clerksync.schema
    schema: Schema = DEFAULT_SCHEMA
    #: env files that were read, in precedence order (for doctor)
    env_files: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def webhook_url(self) -> str | None:
        """The endpoint Clerk must post to, derived from ``NEXT_PUBLIC_URL``."""
        if not self.public_url:
            return None
        return self.public_url.rstrip("/") + WEBHOOK_PATH

    @property
    def uses_embedded_store(self) -> bool:
        return not self.mongodb_url

    def value(self, name: str) -> str | None:
        return {
            "MONGODB_URL": self.mongodb_url,
            "CLERK_SECRET_KEY": self.clerk_secret_key,
            "WEBHOOK_SECRET": self.webhook_secret,
            "NEXT_PUBLIC_URL": self.public_url,
            "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY": self.publishable_key,
            "CLERK_API_URL": self.clerk_api_url,
        }[name]

    def problems(self) -> list[tuple[str, str]]:
        """Every set variable that is malformed, as (name, problem)."""
        found = []
        for name, check in VALIDATORS.items():
            value = self.value(name)
            if value:
                problem = check(value)
                if problem:
                    found.append((name, problem))
        return found

    def require(self, *names: str) -> None:
        """ConfigError (exit 2) for any set value malformed, or the first of ``names`` unset."""
        for name, problem in self.problems():
            raise ConfigError(f"{name} {problem}. Fix it in .env.local ({WHERE[name]}).")
        for name in names:
            if not self.value(name):
                raise ConfigError(f"{name} is not set. Set it in .env.local — {WHERE[name]}.")


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
        files = [p for p in (cwd / ".env.local", cwd / ".env") if p.is_file()]

    merged: dict[str, str] = {}
    for path in reversed(files):  # lowest precedence first
        merged.update(_read_env_file(path))
    merged.update({k: v for k, v in environ.items()})

    def get(name: str) -> str | None:
        for alias in ALIASES.get(name, (name,)):
            value = merged.get(alias, "").strip()
            if value:
                return value
        return None

    def number(name: str, default: float) -> float:
        raw = get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {raw!r}")
        return value

    state_dir = Path(get("CLERKSYNC_HOME") or cwd / ".clerksync")
    return Settings(
        mongodb_url=get("MONGODB_URL"),
        mongodb_db=get("MONGODB_DB"),
        clerk_secret_key=get("CLERK_SECRET_KEY"),
        clerk_api_url=get("CLERK_API_URL") or DEFAULT_API_URL,
        webhook_secret=get("WEBHOOK_SECRET"),
        public_url=get("NEXT_PUBLIC_URL"),
        publishable_key=get("NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY"),
        state_dir=state_dir,
        payload_ttl_days=number("CLERKSYNC_PAYLOAD_TTL_DAYS", 7.0),
        mongo_timeout_ms=int(number("CLERKSYNC_MONGO_TIMEOUT_MS", 3000)),
        schema=load_schema(get("CLERKSYNC_SCHEMA"), cwd=cwd),
        env_files=tuple(files),
    )
