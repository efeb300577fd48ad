"""A first fill's guessed recompute (``Owed(first_fill=True)``) takes what the pages wrote
instead of reading it back, but never where a read would know better: after a page failed
part-way, for an item deleted since (its recompute may never come), or for a payer a
recompute reached earlier in the same job."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pymongo.errors import BulkWriteError, ConnectionFailure

from clerksync.devtools.payloads import clerk_user, event
from clerksync.kinds.subscription_item import SUBSCRIPTION_ITEM
from clerksync.kinds.user import USER
from clerksync.mapping.documents import new_document, state_update
from clerksync.store import owed as owed_module
from clerksync.store import rollups
from clerksync.store.database import Store
from clerksync.store.mongo import IN_CHUNK, WRITE_CHUNK, utcnow
from clerksync.store.owed import Owed
from clerksync.store.writer import tombstone_update
from tests.support.commands import Commands, listened
from tests.support.fakelists import clerk_subscription_item
from tests.support.writes import deliver


def signed_up(store: Store, user_id: str) -> None:
    body = event("user.created", clerk_user(user_id=user_id, updated_at=500))
    deliver(store, body)


def stored(store: Store, *payloads: dict[str, Any]) -> list[Any]:
    """The items, validated, and their documents inserted as a page inserts them."""
    kind = SUBSCRIPTION_ITEM
    items = [kind.parse(p) for p in payloads]
    section, now = store.schema.section(kind), utcnow()
    store.ready(kind)
    store.collection(kind).insert_many(
        [new_document(state_update(kind, section, i, now)) for i in items]
    )
    return items


def plan(store: Store, user_id: str) -> tuple[Any, Any]:
    names = store.schema.derived(USER)
    doc = store.users.find_one({store.key(USER): user_id}) or {}
    return doc.get(names["plan"]), doc.get(names["plan_status"])


def item(item_id: str, **fields: Any) -> dict[str, Any]:
    return clerk_subscription_item(item_id=item_id, user_id="user_p", **fields)


def test_a_failed_page_makes_the_guess_read(store: Store) -> None:
    """Page one wrote user_p's ended item; page two's active one went in, then the page
    failed before it said what it wrote. The failed run's recompute reads, so the plan is
    the active item's, not the only one the job knew of."""
    signed_up(store, "user_p")
    owed = Owed(store, SUBSCRIPTION_ITEM, first_fill=True)
    owed.owe(stored(store, item("csub_item_e", status="ended", plan="free")), [])
    stored(store, item("csub_item_a", plan="team"))  # went in; its page never owed it
    owed.settle(failed=True)
    assert plan(store, "user_p") == ("team", "active")


def test_an_item_deleted_after_its_page_is_not_counted(store: Store) -> None:
    """The page wrote two items of user_p; a delivery then deleted the active one (its
    tombstone, then the document) and stopped before its recompute. The guess leaves it
    out, as a read would have."""
    signed_up(store, "user_p")
    owed = Owed(store, SUBSCRIPTION_ITEM, first_fill=True)
    items = stored(
        store, item("csub_item_e", status="ended", plan="free"), item("csub_item_a", plan="team")
    )
    owed.owe(items, [])
    store.tombstones.update_one({"_id": "csub_item_a"}, tombstone_update(utcnow()), upsert=True)
    collection = store.collection(SUBSCRIPTION_ITEM)
    collection.delete_one({store.key(SUBSCRIPTION_ITEM): "csub_item_a"})
    owed.settle()
    assert plan(store, "user_p") == ("free", "ended")


def test_a_payer_recomputed_earlier_in_the_job_is_read(store: Store) -> None:
    """A long job settles twice: user_p's active item on the first stretch, an ended one on
    the second. The second guess (only the ended item) misses user_p, which holds the
    first's token, and the read that follows keeps the active plan."""
    signed_up(store, "user_p")
    owed = Owed(store, SUBSCRIPTION_ITEM, first_fill=True)
    owed.owe(stored(store, item("csub_item_a", plan="team")), [])
    owed.settle()
    assert plan(store, "user_p") == ("team", "active")
    owed.owe(stored(store, item("csub_item_e", status="ended", plan="free")), [])
    owed.settle()
    assert plan(store, "user_p") == ("team", "active")


def test_past_most_views_the_guess_reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stretch whose payers pay for many items holds no more than ``MOST_VIEWS`` of them:
    past it, the guess reads the items (here: past 2, three items of user_p), and the plan
    is the same."""
    monkeypatch.setattr(owed_module, "MOST_VIEWS", 2)
    signed_up(store, "user_p")
    commands = Commands()
    heard = listened(store, commands)
    try:
        owed = Owed(heard, SUBSCRIPTION_ITEM, first_fill=True)
        owed.owe(stored(heard, item("csub_item_e", status="ended", plan="free")), [])
        owed.owe(stored(heard, item("csub_item_a", plan="team")), [])
        owed.owe(stored(heard, item("csub_item_c", status="canceled")), [])
        sent = len(commands.sent)
        owed.settle()
    finally:
        heard.client.close()
    items = store.collection(SUBSCRIPTION_ITEM).name
    assert ("find", items) in [(n, b.get("find")) for n, b in commands.sent[sent:]]
    assert plan(store, "user_p") == ("team", "active")


def test_a_refused_update_does_not_keep_the_next_commands_from_being_sent(store: Store) -> None:
    """Updates go in commands of ``WRITE_CHUNK`` parents: one the app's unique index refuses
    in the first fails the call, after the second command's updates landed too."""
    collection = store.db[f"chunks_{WRITE_CHUNK}"]
    collection.create_index("v", unique=True)
    collection.create_index("k", unique=True)  # the parents' Clerk-id index
    n = WRITE_CHUNK + 100
    collection.insert_many([{"k": f"p{i:04d}", "v": -i - 1} for i in range(n)])
    absent = {"$exists": False}
    changes = [(f"p{i:04d}", absent, {"$set": {"v": max(i, 1)}}) for i in range(n)]
    try:
        with pytest.raises(BulkWriteError):
            rollups._matched(collection, "k", "tok", changes)
        assert collection.count_documents({"v": {"$gte": WRITE_CHUNK}}) == 100
    finally:
        collection.drop()


def test_parents_given_one_plan_from_one_token_share_an_update(store: Store) -> None:
    """Most payers are on the same plan: their updates go as one per ``IN_CHUNK`` parents
    (the test server spends half as long as on one per parent), each still conditional on
    its token, and the count matched is per parent: one whose token moved is not matched."""
    collection = store.db["alike"]
    collection.insert_many([{"k": f"p{i:03d}"} for i in range(IN_CHUNK + 11)])
    collection.update_one({"k": "p003"}, {"$set": {"tok": "another"}})
    absent, pro = {"$exists": False}, {"$set": {"plan": "pro", "tok": 1}}
    changes = [(f"p{i:03d}", absent, pro) for i in range(IN_CHUNK + 10)]
    changes.append((f"p{IN_CHUNK + 10:03d}", absent, {"$set": {"plan": "free", "tok": 1}}))
    commands = Commands()
    heard = listened(store, commands)
    try:
        matched = rollups._matched(heard.db["alike"], "k", "tok", changes)
    finally:
        heard.client.close()
    assert matched == len(changes) - 1
    (update,) = [body for name, body in commands.sent if name == "update"]
    assert [len(u["q"]["k"]["$in"]) for u in update["updates"][:2]] == [IN_CHUNK, 10]
    assert update["updates"][2]["q"] == {"k": f"p{IN_CHUNK + 10:03d}", "tok": absent}
    assert collection.count_documents({"plan": "pro"}) == IN_CHUNK + 9
    assert collection.find_one({"k": "p003"}, {"_id": 0}) == {"k": "p003", "tok": "another"}
    collection.drop()


@pytest.mark.parametrize("drops", [1, 2])
def test_a_dropped_connection_gets_one_resend(store: Store, fail_points: Any, drops: int) -> None:
    """A command holding shared updates is not one pymongo retries: the connection dropped
    once, the one resend lands every parent's update; dropped twice, the caller hears it."""
    name = f"drop-{uuid.uuid4().hex[:8]}"
    collection = store.db[name]
    collection.insert_many([{"k": f"p{i}"} for i in range(3)])
    changes = [(f"p{i}", {"$exists": False}, {"$set": {"plan": "pro", "tok": 1}}) for i in range(3)]
    commands = Commands()
    heard = listened(store, commands, appname=name)
    data = {"failCommands": ["update"], "appName": name, "closeConnection": True}
    fail_points({"times": drops}, data)
    try:
        if drops == 1:
            assert rollups._matched(heard.db[name], "k", "tok", changes) == 3
        else:
            with pytest.raises(ConnectionFailure):
                rollups._matched(heard.db[name], "k", "tok", changes)
    finally:
        heard.client.close()
    assert commands.names().count("update") == 2
    assert collection.count_documents({"plan": "pro"}) == (3 if drops == 1 else 0)
    collection.drop()
