"""Group commit: concurrent callers' one-document operations sent as one command.

Each receiver delivery is one caller on a thread of its own; what each asks of the database
(insert this new user, is this id tombstoned) is the same command for a different document.
``Group`` lets the first caller take everything queued behind it and send it as one command
(``insert_many``, one ``$in``), while the others wait for their own answer: per delivery the
database and the driver then do a fraction of a command. Nothing is delayed on purpose: a
caller alone is sent at once, and a caller waits for the command in flight and the one that
carries it (more, only past ``most`` callers queued).

Every caller gets exactly its own answer, or the error of the command that carried it (a
timeout, the database away): the same answers as one command each, never a success for a
document whose write failed. A command runs within the time the most patient of its callers
has left (their ``pymongo.timeout``), not only its sender's: a caller that waited long does
not fail the others it sends for. Callers without a deadline (the app's ``ensure_user``) go
in a command of their own, after the others': a delivery's 2 s would fail their write, and
their having none would take the delivery's bound away. A caller whose deadline passes
while it is queued (behind such a command, say) leaves the queue with pymongo's timeout.
"""

from __future__ import annotations

import collections
import contextvars
import copy
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from clerksync.store.mongo import IN_CHUNK

if TYPE_CHECKING:
    from pymongo.collection import Collection

    from clerksync.kinds.base import Kind
    from clerksync.store.database import Store

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T]):
    """One caller: its item, its answer, and the lock it sleeps on (held until it is
    answered, or handed the lead with ``batch``)."""

    __slots__ = ("item", "deadline", "result", "error", "batch", "wake")

    def __init__(self, item: T) -> None:
        self.item = item
        self.deadline = _deadline()
        self.result: Any = None
        self.error: BaseException | None = None
        self.batch: list[_Slot[T]] | None = None
        self.wake = threading.Lock()
        self.wake.acquire()


class Group(Generic[T, R]):
    """``group(item)`` answers what ``run([item])[0]`` would: ``run`` gets the items of every
    caller waiting (up to ``most``) and answers each, in order, with a result or an exception
    for that item alone; an exception ``run`` raises is every caller's.

    One command is in flight at a time; callers arriving meanwhile queue, and when it is
    answered the first of them is woken to send the queue (no other caller is woken but
    those answered: waking every waiter each time costs more than the batching saves)."""

    def __init__(self, run: Callable[[list[T]], Sequence[Any]], *, most: int = 100) -> None:
        self._run = run
        self._most = most
        self._queued: list[_Slot[T]] = []
        self._busy = False  # a command in flight; never False while callers queue
        self._lock = threading.Lock()

    def __call__(self, item: T) -> R:
        slot = _Slot(item)
        with self._lock:
            if self._busy:
                self._queued.append(slot)
                batch = None
            else:
                self._busy = True
                batch = [slot]
        if batch is None:
            self._wait(slot)  # answered, or handed the lead (``batch`` set)
            batch = slot.batch
        if batch is not None:
            self._lead(batch)
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _wait(self, slot: _Slot[T]) -> None:
        """Sleep until answered or handed the lead; a caller with a deadline that passes
        while it is still queued leaves the queue and fails as pymongo's own timeout does
        (the command in flight may be one without a deadline: the app's, bounded only by
        the client's timeouts). One already taken into a command waits for its answer:
        that command runs within its deadline."""
        if slot.deadline is None:
            slot.wake.acquire()
            return
        if slot.wake.acquire(timeout=max(0.0, slot.deadline - time.monotonic())):
            return
        with self._lock:
            still_queued = slot in self._queued
            if still_queued:
                self._queued.remove(slot)
        if not still_queued:
            slot.wake.acquire()
            return
        from pymongo.errors import ExecutionTimeout

        raise ExecutionTimeout("operation would exceed time limit: queued behind a command", 50)

    def _lead(self, batch: list[_Slot[T]]) -> None:
        """Send ``batch`` (its first slot is this thread's), answer its callers, and hand
        the lead to the first caller queued meanwhile, whatever happened.

        Callers with a deadline and callers without one never share a command: a
        delivery's 2 s must bind its write, and must not fail the app's (``_within``). The
        first part goes first, and each part's callers are woken as soon as it is
        answered; a leader with a deadline (or interrupted) hands a part it is not in to
        that part's first caller (who then leads the group on) instead of sending it."""
        mine = batch[0]
        parts = [
            part
            for part in (
                [s for s in batch if s.deadline is not None],
                [s for s in batch if s.deadline is None],
            )
            if part
        ]
        interrupted: BaseException | None = None
        for part in parts:
            if mine not in part and (mine.deadline is not None or interrupted is not None):
                part[0].batch = part  # it sends its own, and hands the lead on after it
                part[0].wake.release()
                if interrupted is not None:
                    raise interrupted
                return
            got: Sequence[Any]
            if interrupted is not None:
                got = [RuntimeError("the command's sender was interrupted")] * len(part)
            else:
                try:
                    got = _within([s.deadline for s in part], self._run, [s.item for s in part])
                    if len(got) != len(part):  # pragma: no cover (a bug in run)
                        raise RuntimeError("group: one answer per item expected")
                except Exception as exc:  # every caller's: their documents went in one command
                    got = [exc] * len(part)
                except BaseException as exc:  # this thread is interrupted: the others are not
                    interrupted = exc
                    got = [RuntimeError("the command's sender was interrupted")] * len(part)
            _answer(part, got)
            for slot in part:
                if slot is not mine:
                    slot.wake.release()
        with self._lock:
            following = self._queued[: self._most]
            self._queued = self._queued[self._most :]
            self._busy = bool(following)
        if following:
            following[0].batch = following
            following[0].wake.release()
        if interrupted is not None:
            raise interrupted


def _answer(part: list[_Slot[Any]], got: Sequence[Any]) -> None:
    """Each caller its answer: a result, or an exception (its own copy of one the others
    raise too: one exception raised in many threads would mix their tracebacks)."""
    raised = collections.Counter(id(a) for a in got if isinstance(a, BaseException))
    shared = {i for i, n in raised.items() if n > 1}
    for slot, answer in zip(part, got, strict=True):
        if isinstance(answer, BaseException):
            slot.error = _copied(answer) if id(answer) in shared else answer
        else:
            slot.result = answer


def _deadline() -> float | None:
    """The caller's ``pymongo.timeout`` deadline (monotonic), or None without one. (pymongo
    has no public reader of it: its ``_csot`` module, with None when that changes.)"""
    try:
        from pymongo import _csot

        return _csot.get_deadline() if _csot.get_timeout() is not None else None
    except Exception:  # pragma: no cover (a pymongo without it)
        return None


def _within(deadlines: list[float | None], run: Callable[[Any], Any], items: Any) -> Any:
    """``run(items)`` within the latest of the callers' deadlines (none if none has one), in a
    context of its own: the sender's own, shorter, deadline does not bind the others'."""
    known = [d for d in deadlines if d is not None]
    if not known:
        return contextvars.Context().run(run, items)

    def bounded() -> Any:
        import pymongo

        with pymongo.timeout(max(0.001, max(known) - time.monotonic())):
            return run(items)

    return contextvars.Context().run(bounded)


def _copied(error: BaseException) -> BaseException:
    """A caller's own copy of an exception others raise too, with what it was raised from
    (a ``StoreUnavailable`` says through its ``__context__`` whether the database was
    unreachable); the original, if it cannot be copied."""
    try:
        duplicate = copy.copy(error).with_traceback(None)
    except Exception:  # pragma: no cover
        return error
    duplicate.__context__ = error.__context__
    duplicate.__cause__ = error.__cause__
    duplicate.__suppress_context__ = error.__suppress_context__
    return duplicate


#: a new document, and the ids whose tombstones are read once it is in
Insert = tuple[Mapping[str, Any], list[str]]


def insert_group(
    collection: Collection[Any], tombstoned: Callable[[list[str]], set[str]], *, most: int = 100
) -> Group[Insert, set[str]]:
    """``insert_one`` for concurrent callers, as one unordered ``insert_many``, then one read
    of the tombstones (``tombstoned``) the inserted documents' callers asked about: each
    caller gets the ids of its own that were tombstoned (read after its document was in),
    or the error ``insert_one`` would have raised for its document (a ``DuplicateKeyError``
    with that document's details); a write-concern error or any failure of the command or
    the read is every caller's."""

    def run(asks: list[Insert]) -> list[Any]:
        from pymongo.errors import BulkWriteError

        answers: list[Any] = [None] * len(asks)
        if len(asks) == 1:
            collection.insert_one(asks[0][0])  # the answer insert_one gives, as it gives it
        else:
            try:
                collection.insert_many([doc for doc, _ in asks], ordered=False)
            except BulkWriteError as exc:
                details = exc.details or {}
                for error in details.get("writeErrors", []):
                    answers[error["index"]] = _write_error(error)
                if details.get("writeConcernErrors"):  # for the rest (as insert_one raises)
                    concern = _concern_error(details)
                    return [concern if a is None else a for a in answers]
        asked = sorted(
            {i for (_, ids), a in zip(asks, answers, strict=True) if a is None for i in ids}
        )
        found = tombstoned(asked) if asked else set()
        return [
            found.intersection(ids) if a is None else a
            for (_, ids), a in zip(asks, answers, strict=True)
        ]

    return Group(run, most=most)


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
        from pymongo.errors import ClientBulkWriteException, InvalidOperation

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
        except InvalidOperation:  # the primary is now a server before 8.0: one by one
            return [_one(collection, ask) for ask in asks]
        except ClientBulkWriteException as exc:
            if exc.error is not None:  # the command failed: pymongo's error, or the reply
                raise (exc.error if isinstance(exc.error, BaseException) else exc) from None
            details = exc.details or {}
            result = exc.partial_result
            for error in details.get("writeErrors") or []:  # the server's documents
                answers[error["idx"]] = _write_error(error)
            if details.get("writeConcernErrors"):  # for the rest (as update_one raises)
                concern = _concern_error(details)
                return [concern if a is None else a for a in answers]
        if result is not None:
            for index, answer in result.update_results.items():
                answers[index] = answer
        if any(a is None for a in answers):  # pragma: no cover (the server left one out)
            raise RuntimeError("bulkWrite answered fewer updates than it was sent")
        return answers

    return Group(run)


def _one_raising(collection: Collection[Any], ask: Update) -> Any:
    return collection.update_one(ask[0], ask[1], upsert=ask[2])


def _one(collection: Collection[Any], ask: Update) -> Any:
    """One ``update_one``: its result, or the exception it raised."""
    try:
        return _one_raising(collection, ask)
    except Exception as exc:
        return exc


def bulk_updates(collection: Collection[Any]) -> bool | None:
    """Does every writable server the driver knows have ``bulkWrite`` (MongoDB 8.0, wire
    version 25)? None while it knows none. Older ones take one ``update_one`` each."""
    servers = collection.database.client.topology_description.server_descriptions().values()
    versions = [s.max_wire_version for s in servers if s.is_writable]
    return min(versions) >= 25 if versions else None


def _write_error(error: Mapping[str, Any]) -> Exception:
    """The error ``insert_one`` or ``update_one`` raises for one write error (pymongo's own
    rule)."""
    from pymongo.errors import DuplicateKeyError, WriteError

    # not ``op``: the document itself (an email, names) has no place in an error's text
    details = {k: v for k, v in error.items() if k not in ("index", "idx", "ok", "op")}
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


class Groups:
    """A store's groups, one per kind and operation, made when first used. ``updater``
    groups once the server is known to have ``bulkWrite``; until a server is known, and
    for good on older servers, it is the collection's own ``update_one``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._inserts: dict[str, Group[Insert, set[str]]] = {}
        self._updates: dict[str, Callable[[Update], Any]] = {}
        self._lock = threading.Lock()

    def inserter(self, kind: Kind) -> Group[Insert, set[str]]:
        """``insert_one`` into the kind's collection, then ``Store.tombstoned`` of the ids
        given with the document (its answer), grouped (``insert_group``)."""
        group = self._inserts.get(kind.name)
        if group is None:
            with self._lock:
                group = self._inserts.get(kind.name)
                if group is None:
                    collection = self.store.collection(kind)
                    group = insert_group(collection, self.store.tombstoned, most=IN_CHUNK)
                    self._inserts[kind.name] = group
        return group

    def updater(self, kind: Kind) -> Callable[[Update], Any]:
        """``update_one`` on the kind's collection, called with (filter, update, upsert),
        answering its ``UpdateResult``; grouped (``update_group``) where the server can."""
        known = self._updates.get(kind.name)
        if known is not None:
            return known
        collection = self.store.collection(kind)
        bulk = bulk_updates(collection)
        if bulk is None:  # no server known yet: asked again next time, not kept
            return lambda ask: _one_raising(collection, ask)
        with self._lock:  # decided once: not a topology read per delivery
            return self._updates.setdefault(
                kind.name,
                update_group(collection) if bulk else lambda ask: _one_raising(collection, ask),
            )
