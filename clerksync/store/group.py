"""Group commit: concurrent callers' one-document operations sent as one command.

Each receiver delivery is one caller on a thread of its own; what each asks of the database
(insert this new user, is this id tombstoned) is the same command for a different document.
``Group`` lets the first caller take everything queued behind it and send it as one command
(``insert_many``, one ``$in``), while the others wait for their own answer: per delivery the
database and the driver then do a fraction of a command, and none waits longer than one
batch in flight plus its own. Nothing is delayed on purpose: a caller alone is sent at once.

Every caller gets exactly its own answer, or the error of the command that carried it (a
timeout, the database away): the same answers as one command each, never a success for a
document whose write failed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from pymongo.collection import Collection

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T]):
    __slots__ = ("item", "done", "result", "error")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class Group(Generic[T, R]):
    """``group(item)`` answers what ``run([item])[0]`` would: ``run`` gets the items of every
    caller waiting (up to ``most``) and answers each, in order, with a result or an exception
    for that item alone; an exception ``run`` raises is every caller's."""

    def __init__(self, run: Callable[[list[T]], Sequence[Any]], *, most: int = 100) -> None:
        self._run = run
        self._most = most
        self._queued: list[_Slot[T]] = []
        self._busy = False
        self._cond = threading.Condition()

    def __call__(self, item: T) -> R:
        slot = _Slot(item)
        batch: list[_Slot[T]] = []
        with self._cond:
            self._queued.append(slot)
            while self._busy and not slot.done:
                self._cond.wait()
            if not slot.done:  # the command in flight is over: this caller sends the next
                self._busy = True
                batch, self._queued = self._queued[: self._most], self._queued[self._most :]
        if batch:
            self._lead(batch)
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _lead(self, batch: list[_Slot[T]]) -> None:
        try:
            answers: Sequence[Any] = self._run([s.item for s in batch])
            if len(answers) != len(batch):  # pragma: no cover (a bug in run)
                raise RuntimeError("group: one answer per item expected")
        except BaseException as exc:  # every caller's: their documents went in one command
            answers = [exc] * len(batch)
        with self._cond:
            for slot, answer in zip(batch, answers, strict=True):
                if isinstance(answer, BaseException):
                    slot.error = answer
                else:
                    slot.result = answer
                slot.done = True
            self._busy = False
            self._cond.notify_all()


def insert_group(collection: Collection[Any]) -> Group[Mapping[str, Any], None]:
    """``insert_one`` for concurrent callers, as one unordered ``insert_many``: each caller
    gets ``None`` or the error ``insert_one`` would have raised for its document (a
    ``DuplicateKeyError`` with that document's details); a write-concern error or any
    failure of the command is every caller's."""

    def run(docs: list[Mapping[str, Any]]) -> list[Any]:
        from pymongo.errors import BulkWriteError

        if len(docs) == 1:
            collection.insert_one(docs[0])  # the answer insert_one gives, as it gives it
            return [None]
        answers: list[Any] = [None] * len(docs)
        try:
            collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            details = exc.details or {}
            if details.get("writeConcernErrors"):
                raise _concern_error(details) from None
            for error in details.get("writeErrors", []):
                answers[error["index"]] = _write_error(error)
        return answers

    return Group(run)


#: one ``update_one``: filter, update, upsert
Update = tuple[Mapping[str, Any], Mapping[str, Any], bool]


def update_group(collection: Collection[Any]) -> Group[Update, Any]:
    """``update_one`` for concurrent callers, as one unordered ``bulkWrite`` (MongoDB 8.0's
    client-level command, the only one that answers each update with its own match count
    and upserted id): each caller gets its ``UpdateResult``, or the error ``update_one``
    would have raised for it; a write-concern error or any failure of the command is every
    caller's. Only for servers that have the command (``bulk_updates``)."""

    def run(asks: list[Update]) -> list[Any]:
        from pymongo import UpdateOne
        from pymongo.errors import ClientBulkWriteException

        if len(asks) == 1:
            query, update, upsert = asks[0]
            return [collection.update_one(query, update, upsert=upsert)]
        space = collection.full_name
        models = [UpdateOne(q, u, upsert=up, namespace=space) for q, u, up in asks]
        client = collection.database.client
        answers: list[Any] = [None] * len(asks)
        result: Any
        try:
            result = client.bulk_write(
                models,
                ordered=False,
                verbose_results=True,
                write_concern=collection.write_concern,
            )
        except ClientBulkWriteException as exc:
            if exc.error is not None:
                raise exc.error from None
            details = exc.details or {}
            if details.get("writeConcernErrors"):
                raise _concern_error(details) from None
            result = exc.partial_result
            for error in details.get("writeErrors") or []:  # the server's documents
                answers[error["idx"]] = _write_error(error)
        if result is not None:
            for index, answer in result.update_results.items():
                answers[index] = answer
        if any(a is None for a in answers):  # pragma: no cover (the server left one out)
            raise RuntimeError("bulkWrite answered fewer updates than it was sent")
        return answers

    return Group(run)


def bulk_updates(collection: Collection[Any]) -> bool:
    """Does every server the driver knows have ``bulkWrite`` (MongoDB 8.0, wire version
    25)? Older ones take one ``update_one`` each."""
    servers = collection.database.client.topology_description.server_descriptions().values()
    versions = [s.max_wire_version for s in servers if s.is_writable]
    return bool(versions) and min(versions) >= 25


def _write_error(error: Mapping[str, Any]) -> Exception:
    """The error ``insert_one`` or ``update_one`` raises for one write error (pymongo's own
    rule)."""
    from pymongo.errors import DuplicateKeyError, WriteError

    details = {k: v for k, v in error.items() if k not in ("index", "idx", "ok")}
    message = str(error.get("errmsg", "write error"))
    code = error.get("code")
    if code == 11000:
        return DuplicateKeyError(message, code, details)
    return WriteError(message, code, details)


def _concern_error(details: Mapping[str, Any]) -> Exception:
    """The error ``insert_one`` raises for a write-concern error (pymongo's own rule)."""
    from pymongo.errors import WriteConcernError, WTimeoutError

    error = details["writeConcernErrors"][-1]
    message = str(error.get("errmsg", "write concern error"))
    if error.get("code") == 64 or (error.get("errInfo") or {}).get("wtimeout"):
        return WTimeoutError(message, error.get("code"), error)
    return WriteConcernError(message, error.get("code"), error)
