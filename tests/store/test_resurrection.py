"""A deleted object stays deleted when the insert that came after its delete never read the
tombstone (a timeout, a crash: the retry does), when a newer state updated that insert's
document before its read (the update reads none), and when the app's index refused part of
a reconcile page (what went in is read before the refusal is raised); and a page whose write
concern failed is a failure. Faults come from the wire server's ``failCommand`` fail point,
on a client of the test's own."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient

from clerksync.devtools.payloads import clerk_user
from clerksync.errors import ClerkSyncError, IndexRefused
from clerksync.kinds.user import USER, parse_clerk_user
from clerksync.store.database import Store
from clerksync.store.pages import write_page
from clerksync.store.users import writer


def state(user_id: str, updated_at: int, **fields: Any) -> Any:
    """A user without an address: no adoption lookup comes before its write, so the fail
    point's ``find`` is the tombstone read after it."""
    fields.setdefault("email", None)
    return parse_clerk_user(clerk_user(user_id=user_id, updated_at=updated_at, **fields))


@pytest.fixture
def faulty(store: Store, fail_points: Any) -> Iterator[tuple[Store, Any]]:
    """The test database on a client of its own, and ``fail(command, times)``: that client's
    next ``times`` ``command`` fail as a server-side timeout (code 50) would."""
    name = f"resurrect-{uuid.uuid4().hex[:8]}"
    address = store.client.address
    assert address is not None
    client: MongoClient[Any] = MongoClient(
        host=address[0], port=address[1], appname=name, tz_aware=True, directConnection=True
    )

    def fail(command: str, times: int = 1, **how: Any) -> None:
        data = {"failCommands": [command], "appName": name, **(how or {"errorCode": 50})}
        fail_points({"times": times}, data)

    try:
        yield Store(client, store.name, store.schema), fail
    finally:
        client.close()


@pytest.mark.parametrize("likely_new", [True, False], ids=["created", "updated"])
def test_a_retry_after_the_tombstone_read_failed_removes_what_the_insert_left(
    store: Store, faulty: tuple[Store, Any], likely_new: bool
) -> None:
    own, fail = faulty
    assert writer(store).delete(USER, "user_late").outcome == "applied"  # tombstone, no doc
    write = writer(own)
    fail("find")  # the tombstone read after the insert
    with pytest.raises(ClerkSyncError):
        write.upsert(USER, state("user_late", 100), likely_new=likely_new)
    assert own.users.find_one({"clerkId": "user_late"}) is not None  # the insert went in
    # Svix retries the delivery: it is refused, and what the insert left goes
    again = write.upsert(USER, state("user_late", 100), likely_new=likely_new)
    assert again.outcome == "stale"
    assert store.users.find_one({"clerkId": "user_late"}) is None


def test_a_newer_state_that_updated_a_late_insert_goes_with_it(
    store: Store, faulty: tuple[Store, Any]
) -> None:
    """v1 inserts after the delete; v2, newer, updates v1's document (an update reads no
    tombstone) before v1 reads the tombstone: v1's read removes the document whatever
    state it holds, and a retry of v1 finds nothing to bring back."""
    own, fail = faulty
    write = writer(store)
    assert write.upsert(USER, state("user_race", 100)).outcome == "applied"
    assert write.delete(USER, "user_race").outcome == "applied"
    fail("find")  # v1's tombstone read fails...
    with pytest.raises(ClerkSyncError):
        writer(own).upsert(USER, state("user_race", 200, first_name="v1"), likely_new=False)
    newer = write.upsert(USER, state("user_race", 300, first_name="v2"), likely_new=False)
    assert newer.outcome == "applied"  # an update: it reads no tombstone
    # ...and v1's retry (its insert refused now: the filter misses v2) removes v2's document
    assert writer(own).upsert(USER, state("user_race", 200)).outcome == "stale"
    assert store.users.find_one({"clerkId": "user_race"}) is None


def test_concurrent_late_states_never_leave_a_deleted_user(store: Store) -> None:
    """The same race in real threads: late states of a deleted user, many at once, of
    which some insert and others update what those inserted."""
    write = writer(store)
    for round_ in range(5):
        user_id = f"user_many{round_}"
        assert write.upsert(USER, state(user_id, 100)).outcome == "applied"
        assert write.delete(USER, user_id).outcome == "applied"
        start = threading.Barrier(8)
        outcomes: list[str] = []

        def late(at: int, user_id: str = user_id, start: Any = start, out: Any = outcomes) -> None:
            start.wait()
            out.append(write.upsert(USER, state(user_id, at), likely_new=at % 2 == 0).outcome)

        threads = [threading.Thread(target=late, args=(200 + n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.users.find_one({"clerkId": user_id}) is None, outcomes


def test_a_page_the_apps_index_refused_still_reads_the_tombstones_of_what_went_in(
    store: Store,
) -> None:
    store.users.create_index("username", unique=True, name="app_username")
    write = writer(store)
    write.upsert(USER, state("user_bob", 100, username="bob"))
    write.delete(USER, "user_gone")  # deleted after Clerk listed it
    page = [state("user_copy", 100, username="bob"), state("user_gone", 100, username="g")]
    with pytest.raises(IndexRefused):
        write_page(write, USER, page)
    assert store.users.find_one({"clerkId": "user_gone"}) is None


def test_a_rerun_removes_what_an_earlier_runs_page_left_unread(
    store: Store, faulty: tuple[Store, Any]
) -> None:
    own, fail = faulty
    writer(store).delete(USER, "user_gone")
    page = [state("user_kept", 100), state("user_gone", 100)]
    fail("find")  # the page's tombstone read, after its insert (no planning read before)
    with pytest.raises(ClerkSyncError):
        write_page(writer(own), USER, page, assume_new=True)
    assert store.users.find_one({"clerkId": "user_gone"}) is not None
    counts = write_page(writer(own), USER, page)  # the rerun: both held, nothing to write
    assert store.users.find_one({"clerkId": "user_gone"}) is None
    assert store.users.find_one({"clerkId": "user_kept"}) is not None
    assert (counts.created, counts.updated, counts.unchanged) == (0, 0, 1)


def test_a_page_whose_write_concern_failed_is_a_failure(
    store: Store, faulty: tuple[Store, Any]
) -> None:
    """The inserts went in, but not known durable: the job fails (a rerun finishes it)
    rather than count them created."""
    own, fail = faulty
    fail("insert", writeConcernError={"code": 64, "errmsg": "waiting for replication timed out"})
    with pytest.raises(ClerkSyncError, match="write concern"):
        write_page(writer(own), USER, [state("user_one", 100)], assume_new=True)


def test_a_page_leaves_a_document_a_prune_tombstoned_to_the_prune(store: Store) -> None:
    """A prune's tombstone beside its document is a prune cascading (it journals what it
    removes) or an undo putting it back (it lifts the tombstone next): not the page's to
    remove. A real delete's is."""
    from clerksync.store.mongo import utcnow

    write = writer(store)
    for user_id in ("user_pruning", "user_deleted"):
        write.upsert(USER, state(user_id, 100))
    store.tombstones.insert_one(
        {"_id": "user_pruning", "pruneRun": "prune-x", "deletedAt": utcnow()}
    )
    store.tombstones.insert_one({"_id": "user_deleted", "deletedAt": utcnow()})
    counts = write_page(write, USER, [state("user_pruning", 100), state("user_deleted", 100)])
    assert store.users.find_one({"clerkId": "user_pruning"}) is not None
    assert store.users.find_one({"clerkId": "user_deleted"}) is None
    assert (counts.created, counts.updated, counts.unchanged) == (0, 0, 1)
