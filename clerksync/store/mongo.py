"""MongoDB helpers below the store: the database name, what went wrong in words a user can
act on, chunked ``$in`` reads and duplicate-key details. Nothing here imports the store
(``clerksync.store.connect`` opens one).

Error texts never include the exception's own message, which can hold the URL.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from clerksync.errors import IndexRefused, StoreUnavailable

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.collection import Collection
    from pymongo.errors import BulkWriteError

    from clerksync.settings import Settings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pymongo.collection import Collection


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def database_name(settings: Settings, client: MongoClient[Any]) -> str:
    """The database in the URL's path, else ``MONGODB_DB``, else ``clerksync``."""
    try:
        return client.get_default_database().name
    except Exception:  # pymongo raises ConfigurationError when the path names none
        return settings.mongodb_db or "clerksync"


F = TypeVar("F", bound=Callable[..., Any])


C = TypeVar("C", bound=type)


def _translate(exc: Exception) -> None:
    """Raise StoreUnavailable for a pymongo failure; return for anything else."""
    from pymongo.errors import PyMongoError

    if isinstance(exc, PyMongoError):
        raise StoreUnavailable(describe_mongo_error(exc)) from None


def translated(fn: F) -> F:
    """pymongo failures leave ``fn`` as StoreUnavailable (one line a user can act on), so no
    caller above the store special-cases pymongo. A generator's failures mid-iteration too."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                _translate(exc)
                raise

        return generator  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            _translate(exc)
            raise

    return wrapper  # type: ignore[return-value]


def translating(cls: C) -> C:
    """``translated`` on every public method a class defines (not inherited ones)."""
    for name, value in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(value):
            setattr(cls, name, translated(value))
    return cls


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
        if exc.code == 50:  # pymongo's own ExecutionTimeout too, sent or not
            return "MongoDB did not answer within the operation's time limit (code 50)."
        if exc.code in (13, 18):
            return "MongoDB refused the credentials in MONGODB_URL (check user and password)."
        return f"MongoDB refused the operation (code {exc.code})."
    if isinstance(exc, ConfigurationError):
        return "MONGODB_URL could not be resolved (check the host name)."
    return f"MongoDB failed: {exc.__class__.__name__}"


#: values per ``$in``: the test server's cost grows with the square of the documents an
#: ``$in`` matches (500 ids: ~0.5 s; the same as 10 queries of 50: ~0.1 s)
IN_CHUNK = 50

#: parents per command of a recompute's updates, as many as a page of Clerk's: one command's
#: work (and a timeout's loss) stays a page's, however many parents a job owes (the test
#: server also spends ~7% less on 1,800 updates sent as four commands than as one)
WRITE_CHUNK = 500


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
        keys=tuple(pattern),
    )


def duplicates_only(
    exc: BulkWriteError,
    ours: Callable[[Mapping[str, Any]], bool],
    collection: str,
    what: str,
    *,
    stored: Callable[[list[int]], set[int]] | None = None,
) -> set[int]:
    """The indexes of a bulk write's duplicate-key failures on clerksync's own index; a
    duplicate on any other index is IndexRefused (naming ``what`` was refused), any other
    failure StoreUnavailable.

    A second copy of a stored item collides with clerksync's index *and* the app's unique
    ones, and the server names just one (mongod, the first it checks): ``stored`` says which
    of the batch positions refused by another index are such copies (stored under their
    Clerk id already, in a state the write could not have replaced); those are duplicates
    like the rest. Any other refusal by the app's index is the index refusing that state."""
    errors = exc.details.get("writeErrors", [])
    for error in errors:
        if error.get("code") != 11000:
            raise StoreUnavailable(f"bulk write failed: {error.get('errmsg')}") from None
    others = [e for e in errors if not ours(e)]
    held = stored([int(e["index"]) for e in others]) if others and stored else set()
    for error in others:
        if int(error["index"]) not in held:
            raise index_refused(error, collection, what) from None
    concern = exc.details.get("writeConcernErrors") or []
    if concern:  # what went in is not known durable: as insert_one/update_one raise
        raise StoreUnavailable(f"write concern failed: {concern[0].get('errmsg')}") from None
    return {int(e["index"]) for e in errors}


def database_unreachable(exc: BaseException) -> bool:
    """Could the database not be reached, or not in time (rather than refusing)? The store
    turns pymongo errors into StoreUnavailable; the original stays as ``__context__``."""
    from pymongo.errors import ConnectionFailure

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionFailure) or getattr(seen, "timeout", False):
            return True
        seen = seen.__context__
    return False
