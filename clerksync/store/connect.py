"""Opening the store the settings name: the app's MongoDB, or the embedded default."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from clerksync.errors import ConfigError
from clerksync.settings import Settings
from clerksync.store.database import Store
from clerksync.store.mongo import database_name

log = logging.getLogger("clerksync.store")


def connect(settings: Settings, *, announce: Any = None) -> Store:
    """Open the store the settings name; the embedded one when ``MONGODB_URL`` is unset.

    Timeouts are short on purpose: a database that does not answer should cost seconds
    and an actionable message, not pymongo's 30-second default."""
    from pymongo import MongoClient
    from pymongo.errors import ConfigurationError

    url = settings.mongodb_url
    if url is None:
        from clerksync.store.embedded import ensure_server

        url = ensure_server(
            settings.state_dir, announce=announce, idle_seconds=settings.embedded_idle_seconds
        )
    timeout = settings.mongo_timeout_ms
    try:
        # pymongo warns of an option it does not know (a typo, or one only the Node driver
        # reads: the app shares this URL), with a source line: one line of ours instead.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            client: MongoClient[Any] = MongoClient(
                url,
                serverSelectionTimeoutMS=timeout,
                connectTimeoutMS=timeout,
                socketTimeoutMS=max(timeout * 3, 10_000),
                tz_aware=True,
                appname="clerksync",
            )
        for warning in caught:
            message = str(warning.message)
            if message.startswith("Unknown option"):  # it names none: ours names them
                message = _ignored_options(url)
            log.warning("MONGODB_URL: %s", message)
    except (ConfigurationError, ValueError):
        # pymongo's own message may quote the URL (and its password): a fixed text instead.
        # A malformed URL is the user's to fix, like any malformed variable: exit 2.
        raise ConfigError(
            "MONGODB_URL is not a usable connection string (check its host list, port, "
            "brackets around IPv6 addresses, and options; for mongodb+srv:// the DNS name; "
            "an @, : or / in the user name or password must be percent-encoded, @ as %40)"
        ) from None
    return Store(client, database_name(settings, client), settings.schema)


def _ignored_options(url: str) -> str:
    """Which options of the URL pymongo does not know (its warning names none): their names
    only, never a value (a password may be one)."""
    from urllib.parse import parse_qsl, urlsplit

    from pymongo.common import URI_OPTIONS_VALIDATOR_MAP, VALIDATORS

    known = {name.lower() for name in (*URI_OPTIONS_VALIDATOR_MAP, *VALIDATORS)}
    try:
        names = [k for k, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)]
    except ValueError:
        names = []
    unknown = sorted({k for k in names if k.lower() not in known})
    if not unknown:
        return "pymongo ignores an option it does not know"
    return (
        f"pymongo ignores {', '.join(unknown)} (not an option it knows: a typo, or one only "
        "your app's driver reads)"
    )
