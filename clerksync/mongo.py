"""Connecting to MongoDB, and saying what went wrong in words a user can act on.

Timeouts are short on purpose: a database that does not answer should cost
seconds and an actionable message, not pymongo's 30-second default. Error
texts never include the exception's own message, which can hold the URL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from clerksync.errors import IndexRefused, StoreUnavailable

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.collection import Collection
    from pymongo.errors import BulkWriteError

    from clerksync.config import Settings
    from clerksync.store import UserStore


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def database_name(settings: Settings, client: MongoClient[Any]) -> str:
    """The database in the URL's path, else ``MONGODB_DB``, else ``clerksync``."""
    try:
        return client.get_default_database().name
    except Exception:  # pymongo raises ConfigurationError when the path names none
        return settings.mongodb_db or "clerksync"


def connect(settings: Settings, *, announce: Any = None) -> UserStore:
    """Open the store the settings name; the embedded one when ``MONGODB_URL`` is unset."""
    from pymongo import MongoClient
    from pymongo.errors import ConfigurationError

    from clerksync.store import UserStore

    url = settings.mongodb_url
    if url is None:
        from clerksync.embedded import ensure_server

        url = ensure_server(settings.state_dir, announce=announce)
    timeout = settings.mongo_timeout_ms
    try:
        client: MongoClient[Any] = MongoClient(
            url,
            serverSelectionTimeoutMS=timeout,
            connectTimeoutMS=timeout,
            socketTimeoutMS=max(timeout * 3, 10_000),
            tz_aware=True,
            appname="clerksync",
        )
    except ConfigurationError as exc:
        raise StoreUnavailable(f"MONGODB_URL is not usable: {exc}") from None
    return UserStore(client, database_name(settings, client), settings.schema)


def describe_mongo_error(exc: Exception) -> str:
    """A one-line, secret-free account of a pymongo failure, with what to check."""
    from pymongo.errors import (
        ConfigurationError,
        OperationFailure,
        ServerSelectionTimeoutError,
    )

    if isinstance(exc, ServerSelectionTimeoutError):
        return (
            "MongoDB did not answer (server selection timed out). Is it running, and does "
            "MONGODB_URL point at it? On Atlas, check Network Access allows this machine."
        )
    if isinstance(exc, OperationFailure):
        if exc.code in (13, 18):
            return "MongoDB refused the credentials in MONGODB_URL (check user and password)."
        return f"MongoDB refused the operation (code {exc.code})."
    if isinstance(exc, ConfigurationError):
        return "MONGODB_URL could not be resolved (check the host name)."
    return f"MongoDB failed: {exc.__class__.__name__}"


#: values per ``$in``: the test server's cost grows with the square of the documents an
#: ``$in`` matches (500 ids: ~0.5 s; the same as 10 queries of 50: ~0.1 s)
IN_CHUNK = 50


def find_in(
    collection: Collection[Any], field: str, values: list[Any], projection: Mapping[str, Any]
) -> Iterator[Mapping[str, Any]]:
    """Documents whose ``field`` is among ``values``, in ``$in`` queries of ``IN_CHUNK``."""
    for start in range(0, len(values), IN_CHUNK):
        yield from collection.find({field: {"$in": values[start : start + IN_CHUNK]}}, projection)


def refused_by(details: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(index name, key pattern) of a duplicate-key error, from its ``keyPattern`` and the
    ``index: NAME dup key`` of its message (servers differ in which they send)."""
    pattern = dict(details.get("keyPattern") or {})
    found = re.search(r"index: (\S+) dup key", str(details.get("errmsg") or ""))
    if found:
        return found.group(1), pattern
    return "_".join(f"{k}_{v}" for k, v in pattern.items()) or "(unnamed)", pattern


def index_refused(details: Mapping[str, Any], collection: str, what: str) -> IndexRefused:
    """The failure for a write an index not clerksync's refused; names the index and its
    fields, never the value (it can be an email)."""
    name, pattern = refused_by(details)
    fields = ", ".join(pattern) or "?"
    return IndexRefused(
        f"the unique index {name!r} ({collection}: {fields}) refused {what}: it is the app's "
        f"index, not clerksync's. `clerksync doctor` says how to fix it; then the retry "
        "(or `clerksync events replay --failed`, or `clerksync reconcile`) stores it",
        index=name,
        collection=collection,
    )


def duplicates_only(
    exc: BulkWriteError, ours: Callable[[Mapping[str, Any]], bool], collection: str
) -> set[int]:
    """The indexes of a bulk write's duplicate-key failures on clerksync's own index; a
    duplicate on any other index is IndexRefused, any other failure StoreUnavailable."""
    errors = exc.details.get("writeErrors", [])
    for error in errors:
        if error.get("code") != 11000:
            raise StoreUnavailable(f"bulk write failed: {error.get('errmsg')}") from None
    for error in errors:
        if not ours(error):
            raise index_refused(error, collection, "a Clerk user's document") from None
    return {int(e["index"]) for e in errors}
