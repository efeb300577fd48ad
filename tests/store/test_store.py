"""Store against the real wire server: ordering, duplicates, tombstones, lookups."""

from __future__ import annotations

import threading

import pytest

from clerksync.devtools.payloads import clerk_user
from clerksync.errors import Ambiguous, NotFound
from clerksync.kinds.user import USER, parse_clerk_user
from clerksync.store.database import Store
from clerksync.store.lookups import find_user
from clerksync.store.users import set_admin
from tests.support.writes import delete, page, plan, upsert


def state(user_id: str, updated_at: int, **kw: object) -> object:
    return parse_clerk_user(clerk_user(user_id=user_id, updated_at=updated_at, **kw))


@pytest.mark.parametrize("likely_new", [False, True], ids=["upsert", "insert-first"])
def test_newer_state_applies_older_is_stale_same_is_duplicate(
    store: Store, likely_new: bool
) -> None:
    def apply(updated_at: int, name: str) -> str:
        user = state("user_a", updated_at, first_name=name)
        return upsert(store, USER, user, likely_new=likely_new).outcome

    assert apply(100, "One") == "applied"
    assert apply(100, "One") == "duplicate"
    assert apply(50, "Old") == "stale"
    assert apply(200, "Two") == "applied"
    doc = find_user(store, "user_a")
    assert doc["firstName"] == "Two"
    assert store.count() == 1


def test_update_keeps_is_admin_and_created_at(store: Store) -> None:
    upsert(store, USER, state("user_a", 100))
    first = find_user(store, "user_a")
    set_admin(store, first["_id"], True)
    upsert(store, USER, state("user_a", 200, first_name="Changed"))
    doc = find_user(store, "user_a")
    assert doc["isAdmin"] is True
    assert doc["createdAt"] == first["createdAt"]


@pytest.mark.parametrize("likely_new", [False, True], ids=["upsert", "insert-first"])
def test_delete_leaves_a_tombstone_that_blocks_late_updates(store: Store, likely_new: bool) -> None:
    upsert(store, USER, state("user_a", 100), likely_new=likely_new)
    assert delete(store, USER, "user_a").outcome == "applied"
    assert delete(store, USER, "user_a").outcome == "duplicate"
    assert upsert(store, USER, state("user_a", 999), likely_new=likely_new).outcome == "stale"
    with pytest.raises(NotFound):
        find_user(store, "user_a")


@pytest.mark.parametrize("likely_new", [False, True], ids=["upsert", "insert-first"])
def test_documents_written_by_the_app_without_clerk_updated_at_are_updated(
    store: Store, likely_new: bool
) -> None:
    store.users.insert_one({"clerkId": "user_app", "email": "old@x.com", "isAdmin": True})
    assert (
        upsert(store, USER, state("user_app", 10, email="new@x.com"), likely_new=likely_new).outcome
        == "applied"
    )
    doc = find_user(store, "user_app")
    assert doc["email"] == "new@x.com" and doc["isAdmin"] is True
    assert store.count() == 1


@pytest.mark.parametrize("likely_new", [False, True], ids=["upsert", "insert-first"])
def test_concurrent_upserts_of_one_new_user_make_one_document(
    store: Store, likely_new: bool
) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        outcomes.append(upsert(store, USER, state("user_race", 100), likely_new=likely_new).outcome)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.users.count_documents({"clerkId": "user_race"}) == 1
    assert outcomes.count("applied") == 1
    assert set(outcomes) <= {"applied", "duplicate"}


def test_lookup_by_every_id_form(store: Store) -> None:
    upsert(store, USER, state("user_x", 1, email="Grace@Example.com"))
    doc = find_user(store, "user_x")
    assert find_user(store, "user_x")["_id"] == doc["_id"]
    assert find_user(store, str(doc["_id"]))["clerkId"] == "user_x"
    assert find_user(store, "grace@example.COM")["clerkId"] == "user_x"
    with pytest.raises(NotFound):
        find_user(store, "nobody@example.com")


def test_ambiguous_email_lists_the_candidates(store: Store) -> None:
    upsert(store, USER, state("user_1", 1, email="same@example.com"))
    upsert(store, USER, state("user_2", 1, email="same@example.com"))
    with pytest.raises(Ambiguous, match="user_1.*user_2|user_2.*user_1"):
        find_user(store, "same@example.com")


def test_indexes_are_idempotent_and_clerk_id_is_unique(store: Store) -> None:
    store.ensure_indexes()
    store.ensure_indexes()
    assert store.has_unique_clerk_index()


@pytest.mark.parametrize("index", ["partial", "plain"])
@pytest.mark.parametrize("assume_new", [False, True], ids=["planned", "insert-first"])
def test_bulk_apply_follows_the_receivers_rules(store: Store, assume_new: bool, index: str) -> None:
    if index == "plain":  # the app's model built a plain unique index first (reads use $in)
        store.users.drop_indexes()
        store.users.create_index("clerkId", unique=True, name="clerkId_1")
        store = Store(store.client, store.name, store.schema)
    upsert(store, USER, state("user_old", 100))
    upsert(store, USER, state("user_new", 900, first_name="Kept"))
    upsert(store, USER, state("user_del", 100))
    delete(store, USER, "user_del")
    store.users.insert_one({"clerkId": "user_app", "email": "app@x.com", "isAdmin": True})
    batch = [
        state("user_fresh", 500),
        state("user_old", 500, first_name="Updated"),
        state("user_new", 500, first_name="Older"),
        state("user_del", 500),
        state("user_app", 500, first_name="FromClerk"),
    ]
    assert plan(store, USER, batch) == {"created": 1, "updated": 2, "adopted": 0, "unchanged": 1}
    counts = page(store, USER, batch, assume_new=assume_new)
    assert counts == {"created": 1, "updated": 2, "adopted": 0, "unchanged": 1}
    assert find_user(store, "user_old")["firstName"] == "Updated"
    assert find_user(store, "user_new")["firstName"] == "Kept"
    assert find_user(store, "user_app")["isAdmin"] is True
    assert store.users.count_documents({"clerkId": "user_del"}) == 0  # no resurrection
    fresh = find_user(store, "user_fresh")
    assert "dueAt" in fresh["clerksync"] and fresh["isAdmin"] is False  # its write-back is queued
    again = page(store, USER, batch, assume_new=assume_new)
    assert again == {"created": 0, "updated": 0, "adopted": 0, "unchanged": 4}


class StalePlan(Store):
    """A store whose plan is out of date by the time it writes, as when the receiver (or a
    delete) lands between reconcile's read and its write: ``plan`` maps Clerk ids to the
    versions it believes are stored."""

    plan: dict[str, object] = {}

    def _stored_versions(self, clerk_ids: list[str]) -> dict[str, object]:
        return {i: self.plan[i] for i in clerk_ids if i in self.plan}


def test_bulk_apply_with_a_stale_plan_still_orders_and_never_resurrects(
    store: Store,
) -> None:
    stale = StalePlan(store.client, store.name)
    upsert(store, USER, state("user_newer", 900, first_name="Receiver"))  # arrived meanwhile
    upsert(store, USER, state("user_older", 100))
    upsert(store, USER, state("user_deleted", 100))
    delete(store, USER, "user_deleted")  # deleted meanwhile
    stale.plan = {"user_deleted": 100, "user_vanished": 100}  # believed stored
    batch = [
        state("user_newer", 500, first_name="Reconcile"),  # plan: absent -> insert fails
        state("user_older", 500, first_name="Reconcile"),  # plan: absent -> insert fails
        state("user_deleted", 500),  # plan: stored older -> upsert would re-create it
        state("user_vanished", 500),  # plan: stored older, but gone -> created after all
    ]
    counts = page(stale, USER, batch)
    assert counts == {"created": 1, "updated": 1, "adopted": 0, "unchanged": 1}
    assert find_user(store, "user_newer")["firstName"] == "Receiver"
    assert find_user(store, "user_older")["firstName"] == "Reconcile"
    assert store.users.count_documents({"clerkId": "user_deleted"}) == 0
    assert "dueAt" in find_user(store, "user_vanished")["clerksync"]
    assert store.users.count_documents({}) == 3
