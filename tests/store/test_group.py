"""Group commit (``clerksync.store.group``): concurrent callers' one-document operations go
as one command, and each caller still gets exactly its own answer or error."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pymongo.errors import DuplicateKeyError

from clerksync.devtools.payloads import clerk_user
from clerksync.kinds.user import USER, parse_clerk_user
from clerksync.mapping.documents import ordering_filter
from clerksync.store.database import Store
from clerksync.store.group import Group, Groups
from clerksync.store.mongo import describe_mongo_error
from tests.support.writes import delete, upsert


def queued(group: Group[Any, Any], n: int) -> None:
    """Wait until ``n`` callers queue behind the command in flight."""
    deadline = time.monotonic() + 10
    while len(group._queued) < n:
        assert time.monotonic() < deadline, "callers never queued"
        time.sleep(0.005)


def test_callers_arriving_during_a_command_go_together_each_with_its_own_answer() -> None:
    batches: list[list[int]] = []
    first = threading.Event()
    release = threading.Event()

    def run(items: list[int]) -> list[Any]:
        batches.append(items)
        if len(batches) == 1:
            first.set()
            release.wait(10)
        return [ValueError(f"no {i}") if i == 3 else i * 10 for i in items]

    group: Group[int, int] = Group(run)

    def call(i: int) -> Any:
        try:
            return group(i)
        except ValueError as exc:
            return str(exc)

    with ThreadPoolExecutor(4) as pool:
        lead = pool.submit(call, 1)
        assert first.wait(10)
        rest = [pool.submit(call, i) for i in (2, 3, 4)]
        queued(group, 3)
        release.set()
        answers = [lead.result(10), *(f.result(10) for f in rest)]
    assert answers == [10, 20, "no 3", 40]  # the error is its caller's alone
    assert batches[0] == [1] and sorted(batches[1]) == [2, 3, 4]
    assert group(5) == 50 and batches[-1] == [5]  # alone: sent at once


class Held:
    """A group's ``run`` whose first command waits for ``release`` (``started`` is set
    meanwhile) and then does ``first``; the commands after it do ``later``."""

    def __init__(self, first: Callable[[list[int]], Any], later: Callable[[list[int]], Any]):
        self.first, self.later = first, later
        self.started, self.release = threading.Event(), threading.Event()
        self.calls = 0

    def __call__(self, items: list[int]) -> Any:
        self.calls += 1
        if self.calls > 1:
            return self.later(items)
        self.started.set()
        self.release.wait(10)
        return self.first(items)


def timed_out(items: list[int]) -> Any:
    raise TimeoutError("the database did not answer")


def interrupted(items: list[int]) -> Any:
    raise KeyboardInterrupt


def test_a_failed_command_is_every_callers_failure_each_raising_its_own_copy() -> None:
    run = Held(first=lambda items: items, later=timed_out)
    group: Group[int, int] = Group(run)
    with ThreadPoolExecutor(4) as pool:
        lead = pool.submit(group, 1)
        assert run.started.wait(10)
        rest = [pool.submit(group, i) for i in (2, 3)]
        queued(group, 2)
        run.release.set()
        assert lead.result(10) == 1
        errors = []
        for future in rest:
            with pytest.raises(TimeoutError) as raised:
                future.result(10)
            errors.append(raised.value)
    assert run.calls == 2
    assert errors[0] is not errors[1]  # one exception raised in two threads would mix them


def concurrently(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """``fn`` on every item at once (all threads released together: the first caller's
    command is in flight while the others arrive); each answer, or the exception raised."""
    barrier = threading.Barrier(len(items))

    def call(item: Any) -> Any:
        barrier.wait(10)
        try:
            return fn(item)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(call, items))


def user(user_id: str, updated_at: int, **kw: Any) -> Any:
    return parse_clerk_user(clerk_user(user_id=user_id, updated_at=updated_at, **kw))


def test_grouped_inserts_answer_each_document_and_read_tombstones_after(store: Store) -> None:
    delete(store, USER, "user_gone")
    inserts = Groups(store).inserter(USER)
    docs = [({"clerkId": f"user_{i}", "email": f"{i}@x.com"}, [f"user_{i}"]) for i in range(12)]
    docs.append(({"clerkId": "user_3", "email": "again@x.com"}, ["user_3"]))
    docs.append(({"clerkId": "user_gone", "email": "gone@x.com"}, ["user_gone", "user_x"]))
    answers = concurrently(inserts, docs)
    refused = [a for a in answers if isinstance(a, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], DuplicateKeyError)
    assert refused[0].details and refused[0].details.get("keyValue") == {"clerkId": "user_3"}
    assert answers[-1] == {"user_gone"}  # read after its insert: the delete is seen
    assert all(a == set() for a in answers[:-1] if not isinstance(a, Exception))
    assert store.users.count_documents({}) == 13


def test_grouped_updates_answer_each_its_own_match(watched: tuple[Store, Any]) -> None:
    store, commands = watched
    for i in range(10):
        upsert(store, USER, user(f"user_{i}", 100, email=f"{i}@x.com"))
    store.users.create_index("email", unique=True, name="email_1")
    commands.sent.clear()
    updates = Groups(store).updater(USER)
    asks: list[Any] = []
    for i in range(10):
        newer = user(f"user_{i}", 50 if i % 3 == 0 else 200)  # every third: stale
        asks.append((ordering_filter("clerkId", newer), {"$set": {"firstName": f"N{i}"}}, False))
    asks.append(({"clerkId": "user_1"}, {"$set": {"email": "0@x.com"}}, False))  # taken
    asks.append((ordering_filter("clerkId", user("user_new", 1)), {"$set": {"x": 1}}, True))
    answers = concurrently(updates, asks)
    for i, answer in enumerate(answers[:10]):
        assert answer.matched_count == (0 if i % 3 == 0 else 1), i
    assert isinstance(answers[10], DuplicateKeyError)
    assert answers[10].details and answers[10].details.get("keyValue") == {"email": "0@x.com"}
    assert answers[11].matched_count == 0 and answers[11].upserted_id is not None
    names = {d["clerkId"]: d.get("firstName") for d in store.users.find()}
    assert names["user_0"] != "N0" and names["user_1"] == "N1"
    sent = commands.names()
    assert sent.count("bulkWrite") + sent.count("update") < len(asks)  # grouped


def test_a_command_runs_within_the_most_patient_callers_time() -> None:
    """A caller with little time left sends for the others: the command gets the latest
    deadline of its callers, not its sender's. (One whose time is over while it is queued
    leaves the queue: the test after the next.)"""
    import pymongo
    from pymongo import _csot

    left: list[float | None] = []
    first = threading.Event()
    release = threading.Event()

    def run(items: list[str]) -> list[str]:
        left.append(_csot.remaining())
        if len(left) == 1:
            first.set()
            release.wait(10)
        return items

    group: Group[str, str] = Group(run)

    def call(name: str, seconds: float) -> str:
        with pymongo.timeout(seconds):
            return group(name)

    with ThreadPoolExecutor(3) as pool:
        lead = pool.submit(call, "a", 30)
        assert first.wait(10)
        impatient = pool.submit(call, "b", 5)
        queued(group, 1)
        patient = pool.submit(call, "c", 30)
        queued(group, 2)
        release.set()  # b leads the next command, within c's 30 s
        assert (lead.result(10), impatient.result(10), patient.result(10)) == ("a", "b", "c")
    assert left[1] is not None and left[1] > 20


def test_callers_with_and_without_a_deadline_never_share_a_command() -> None:
    """A caller with no ``pymongo.timeout`` (the app's ``ensure_user``) queued with a
    delivery that has 2 s: the delivery's command runs within its 2 s (its 503 comes fast
    while the database is away), the app's in a command of its own, without a deadline (a
    delivery's would make its write a spurious timeout)."""
    import pymongo
    from pymongo import _csot

    sent: list[tuple[list[str], float | None]] = []
    first = threading.Event()
    release = threading.Event()

    def run(items: list[str]) -> list[str]:
        sent.append((items, _csot.get_timeout()))
        if len(sent) == 1:
            first.set()
            release.wait(10)
        return items

    group: Group[str, str] = Group(run)

    def call(name: str, seconds: float | None) -> str:
        if seconds is None:
            return group(name)
        with pymongo.timeout(seconds):
            return group(name)

    with ThreadPoolExecutor(4) as pool:
        lead = pool.submit(call, "a", 2)
        assert first.wait(10)
        app = pool.submit(call, "b", None)
        queued(group, 1)
        deliveries = [pool.submit(call, name, 2) for name in ("c", "d")]
        queued(group, 3)
        release.set()
        answers = [f.result(10) for f in (lead, app, *deliveries)]
    assert answers == ["a", "b", "c", "d"]
    assert [items for items, _ in sent] == [["a"], ["c", "d"], ["b"]]
    timeouts = [timeout for _, timeout in sent]
    assert timeouts[0] is not None and timeouts[1] is not None and timeouts[2] is None


def test_an_interrupted_sender_answers_the_others_and_the_group_goes_on() -> None:
    run = Held(first=interrupted, later=lambda items: items)
    group: Group[int, int] = Group(run)

    def call(n: int) -> Any:
        try:
            return group(n)
        except BaseException as exc:
            return exc

    with ThreadPoolExecutor(2) as pool:
        lead = pool.submit(call, 1)
        assert run.started.wait(10)
        run.release.set()
        assert isinstance(lead.result(10), KeyboardInterrupt)
    assert group(2) == 2  # the lead was handed on: nothing hangs


def test_a_shared_failure_s_copies_keep_what_it_was_raised_from() -> None:
    """Whether the database was unreachable is read from an error's ``__context__``."""
    from pymongo.errors import NetworkTimeout

    from clerksync.errors import StoreUnavailable
    from clerksync.store.mongo import database_unreachable

    try:
        try:
            raise NetworkTimeout("timed out")
        except NetworkTimeout:
            raise StoreUnavailable("MongoDB failed: NetworkTimeout") from None
    except StoreUnavailable as exc:
        shared = exc
    from clerksync.store.group import _copied

    copied = _copied(shared)
    assert copied is not shared and database_unreachable(copied)


def test_a_caller_whose_deadline_passes_while_queued_leaves_the_queue() -> None:
    """A delivery queued behind the app's command (no deadline, held up) fails with
    pymongo's timeout when its own 0.3 s are over, while that command is still in flight;
    its document is never sent."""
    import pymongo
    from pymongo.errors import ExecutionTimeout

    sent: list[list[str]] = []
    first = threading.Event()
    release = threading.Event()

    def run(items: list[str]) -> list[str]:
        sent.append(items)
        if len(sent) == 1:
            first.set()
            release.wait(30)
        return items

    group: Group[str, str] = Group(run)

    def delivery() -> str:
        with pymongo.timeout(0.3):
            return group("delivery")

    with ThreadPoolExecutor(2) as pool:
        app = pool.submit(group, "app")
        assert first.wait(10)
        late = pool.submit(delivery)
        with pytest.raises(ExecutionTimeout) as timed_out:
            late.result(20)
        # what the receiver's 503 and the log then say (``translated``)
        assert "time limit" in describe_mongo_error(timed_out.value)
        assert not release.is_set() and not app.done()  # the app's command still in flight
        release.set()
        assert app.result(10) == "app"
    assert sent == [["app"]]
    assert group("next") == "next"  # the group goes on


@pytest.mark.parametrize("order", [("d", "a2"), ("a2", "d")], ids=["delivery first", "app first"])
def test_a_delivery_taken_with_the_apps_caller_is_answered_before_the_apps_command(
    order: tuple[str, str],
) -> None:
    """A delivery (a deadline) and the app's caller (none) queued together behind the
    app's first command: whichever leads, the delivery's own command goes first and the
    delivery is answered while the app's second command is still in flight."""
    import pymongo

    sent: list[list[str]] = []
    held = {"a1": threading.Event(), "a2": threading.Event()}
    started = {"a1": threading.Event(), "a2": threading.Event()}

    def run(items: list[str]) -> list[str]:
        sent.append(items)
        for name in items:
            if name in held:
                started[name].set()
                held[name].wait(30)
        return items

    group: Group[str, str] = Group(run)

    def call(name: str) -> str:
        if name == "d":
            with pymongo.timeout(20):
                return group(name)
        return group(name)

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(call, "a1")
        assert started["a1"].wait(10)
        calls = {}
        for n, name in enumerate(order, start=1):
            calls[name] = pool.submit(call, name)
            queued(group, n)
        held["a1"].set()
        assert calls["d"].result(10) == "d"
        assert started["a2"].wait(10) and not calls["a2"].done()  # still in flight
        held["a2"].set()
        assert (first.result(10), calls["a2"].result(10)) == ("a1", "a2")
    assert sent == [["a1"], ["d"], ["a2"]]
    assert group("next") == "next"  # the group goes on
