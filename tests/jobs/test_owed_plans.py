"""Reconcile's recomputes of the payers' plans (``clerksync.store.owed``): done once per
payer after the pages, guessing the payers hold no token, and never lost when a run stops
before them: the next run's sweep does them, though it finds every item unchanged."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from pymongo import MongoClient

from clerksync.clerk.gateway import ClerkGateway
from clerksync.devtools.payloads import clerk_user, event
from clerksync.errors import ClerkSyncError
from clerksync.jobs.reconcile import reconcile
from clerksync.kinds.organization import ORGANIZATION
from clerksync.kinds.subscription_item import SUBSCRIPTION_ITEM
from clerksync.kinds.user import USER
from clerksync.mapping import bookkeeping as bk
from clerksync.store import owed, rollups
from clerksync.store.database import Store
from clerksync.store.instance import meta_collection
from clerksync.store.mongo import WRITE_CHUNK, utcnow
from tests.support.commands import AfterCommand, Commands, listened
from tests.support.fakeclerk import SECRET_KEY, FakeClerk
from tests.support.fakelists import clerk_subscription_item
from tests.support.writes import deliver, writer_of


def run(store: Store, fake: FakeClerk) -> Any:
    return reconcile(store, ClerkGateway(SECRET_KEY, api_url=fake.url), rate=1000)


def plan(store: Store, kind: Any, clerk_id: str) -> tuple[Any, Any]:
    names = store.schema.derived(kind)
    doc = store.collection(kind).find_one({store.key(kind): clerk_id}) or {}
    return doc.get(names["plan"]), doc.get(names["plan_status"])


def run_heard(store: Store, fake: FakeClerk, *listeners: Any) -> None:
    """A run on a client of its own that ``listeners`` hear."""
    heard = listened(store, *listeners)
    try:
        run(heard, fake)
    finally:
        heard.client.close()


def settle_read(store: Store) -> Any:
    """Picks the run's read of the payers' items after its page of items went in."""
    items = store.collection(SUBSCRIPTION_ITEM).name
    via = store.schema.section(SUBSCRIPTION_ITEM).require("payer_user_id")
    inserted: list[bool] = []

    def settles(event: Any) -> bool:
        if event.command_name == "insert" and event.command.get("insert") == items:
            inserted.append(True)
        filter_ = event.command.get("filter") or {}
        return bool(inserted) and event.command.get("find") == items and via in filter_

    return settles


def page_done(store: Store) -> Any:
    """Picks the second tombstone read after the items went in (the page's own, then the
    guess's, which leaves out what a delete tombstoned since): on a first fill the guess is
    what the page wrote, so this is its last command before the guessed update."""
    items, tombstones = store.collection(SUBSCRIPTION_ITEM).name, store.tombstones.name
    inserted: list[bool] = []
    reads: list[bool] = []

    def done(event: Any) -> bool:
        if event.command_name == "insert" and event.command.get("insert") == items:
            inserted.append(True)
        if inserted and event.command.get("find") == tombstones:
            reads.append(True)
        return len(reads) == 2

    return done


def guess_made(store: Store, fake: FakeClerk, first_fill: bool) -> Any:
    """The last command before the run's guessed update: on a first fill, the guess's
    tombstone read (``page_done``); else (an item is stored already, user_z's, from an
    earlier run) the read of the payers' items."""
    if first_fill:
        return page_done(store)
    fake.add_user(user_id="user_z", created_at=5, updated_at=5)
    fake.add_object("subscription_items", clerk_subscription_item(user_id="user_z"))
    run(store, fake)
    return settle_read(store)


def records(store: Store) -> list[dict[str, Any]]:
    return list(meta_collection(store).find(owed.RECORDS))


def payers(fake: FakeClerk) -> None:
    """user_a on pro; user_b upgraded (an ended free item, an active team one)."""
    for user_id in ("user_a", "user_b"):
        fake.add_user(user_id=user_id, created_at=10, updated_at=10)
    fake.add_object("subscription_items", clerk_subscription_item(user_id="user_a", created_at=50))
    ended = clerk_subscription_item(
        user_id="user_b", status="ended", plan="free", amount=0, created_at=51
    )
    fake.add_object("subscription_items", ended)
    team = clerk_subscription_item(user_id="user_b", plan="team", created_at=52)
    fake.add_object("subscription_items", team)


@pytest.fixture
def faulty(store: Store, fail_points: Any) -> Iterator[tuple[Store, Any]]:
    """The test database on a client of its own, and ``fail(command)``: every ``command``
    that client sends fails (code 50, a server-side timeout) until the test ends."""
    name = f"owed-{uuid.uuid4().hex[:8]}"
    address = store.client.address
    assert address is not None
    client: MongoClient[Any] = MongoClient(
        host=address[0], port=address[1], appname=name, tz_aware=True, directConnection=True
    )

    def fail(command: str) -> None:
        fail_points("alwaysOn", {"failCommands": [command], "appName": name, "errorCode": 50})

    try:
        yield Store(client, store.name, store.schema), fail
    finally:
        client.close()


def test_a_run_stopped_before_its_plans_is_finished_by_the_next(
    store: Store, fake_clerk: FakeClerk, faulty: tuple[Store, Any]
) -> None:
    """The items are written, then the database fails the plans' update and the run stops:
    a rerun finds every item unchanged, and still sets the plans (its sweep reads the
    record the stopped run left). The record goes once it is stale."""
    for user_id in ("user_a", "user_b"):
        fake_clerk.add_user(user_id=user_id, created_at=10, updated_at=10)
    run(store, fake_clerk)  # the users (and the database's binding) first
    payers(fake_clerk)
    own, fail = faulty
    fail("update")  # the users are unchanged: the plans' update is the run's first
    with pytest.raises(ClerkSyncError):
        run(own, fake_clerk)
    assert store.collection(SUBSCRIPTION_ITEM).count_documents({}) == 3
    assert plan(store, USER, "user_a") == (None, None)  # the items are in, the plans not
    assert len(records(store)) == 1

    again = run(store, fake_clerk)
    assert again.kinds["subscription item"].unchanged == 3
    assert plan(store, USER, "user_a") == ("pro", "active")
    assert plan(store, USER, "user_b") == ("team", "active")
    assert len(records(store)) == 1  # young: the stopped run might still be writing

    aged = {"$set": {"since": utcnow() - timedelta(hours=1)}}
    meta_collection(store).update_many(owed.RECORDS, aged)
    run(store, fake_clerk)
    assert records(store) == []


def test_a_payer_on_many_pages_is_recomputed_once(store: Store, fake_clerk: FakeClerk) -> None:
    """An organization paying for items on both pages of 500: one update of it, and one
    record per page written, both gone after the run. The guessed updates of the 514 user
    payers (not stored: they match nothing) go in commands of at most a page's
    (``WRITE_CHUNK``) payers."""
    fake_clerk.add_org(org_id="org_p", created_at=10, updated_at=10)
    for i in range(520):
        item = clerk_subscription_item(
            org_id="org_p" if i % 100 == 0 else None,
            user_id=None if i % 100 == 0 else f"user_x{i}",
            status="ended" if i else "active",  # the first (on page one) is the current one
            plan="org" if i == 0 else "free",
            created_at=100 + i,
        )
        fake_clerk.add_object("subscription_items", item)
    commands = Commands()
    run_heard(store, fake_clerk, commands)
    org_updates = [
        op
        for name, body in commands.sent
        if name == "update" and body["update"] == store.collection(ORGANIZATION).name
        for op in body["updates"]
    ]
    assert len(org_updates) == 1
    assert plan(store, ORGANIZATION, "org_p") == ("org", "active")
    key = store.key(USER)
    user_updates = [  # parents per command (those sharing a change share an update)
        sum(
            len(u["q"][key]["$in"]) if isinstance(u["q"][key], dict) else 1 for u in body["updates"]
        )
        for name, body in commands.sent
        if name == "update" and body["update"] == store.users.name
    ]
    assert user_updates == [WRITE_CHUNK, 514 - WRITE_CHUNK]
    record_writes = [
        body
        for name, body in commands.sent
        if name == "insert" and body["insert"] == meta_collection(store).name
    ]
    assert len(record_writes) == 2
    assert records(store) == []


def updates_of(commands: Commands, collection: str) -> list[str]:
    """The run's commands on ``collection`` that update or read it, in order."""
    return [
        name
        for name, body in commands.sent
        if name in ("update", "find") and body.get(name) == collection
    ]


def test_a_payer_holding_a_token_fails_the_guess_and_is_read(
    store: Store, fake_clerk: FakeClerk
) -> None:
    """user_b's plan was recomputed before (by the first run, then by a delivery of its
    team item's end): it holds a token, the second run's guessed update misses it, and the
    read that follows sets its plan."""
    payers(fake_clerk)
    run(store, fake_clerk)
    team = next(
        o
        for o in fake_clerk.lists["subscription_items"].values()
        if o["payer"]["user_id"] == "user_b" and o["status"] == "active"
    )
    ended = {**team, "status": "ended", "updated_at": team["updated_at"] + 10}
    fake_clerk.lists["subscription_items"][team["id"]] = ended
    data = clerk_subscription_item(
        item_id=team["id"],
        user_id="user_b",
        status="ended",
        plan="team",
        created_at=team["created_at"],
        updated_at=ended["updated_at"],
        webhook=True,
    )
    body = {"type": "subscriptionItem.ended", "object": "event", "data": data}
    deliver(store, body)
    assert plan(store, USER, "user_b") == ("team", "ended")

    fake_clerk.add_object("subscription_items", clerk_subscription_item(user_id="user_b"))
    commands = Commands()
    run_heard(store, fake_clerk, commands)
    assert plan(store, USER, "user_b") == ("pro", "active")
    # the guessed update (it misses), the token read, the update that lands
    assert updates_of(commands, store.users.name)[-3:] == ["update", "find", "update"]


@pytest.mark.parametrize("first_fill", [True, False], ids=["first-fill", "items-stored"])
def test_a_delivery_between_the_runs_guess_and_its_update_wins(
    store: Store, fake_clerk: FakeClerk, first_fill: bool
) -> None:
    """A delivery's recompute lands between the run's guess for user_a (what its page
    wrote, or its read of user_a's items) and its guessed update of user_a: the guess fails
    (the delivery wrote a token), the run reads again, and the plan is the delivery's newer
    state."""
    when = guess_made(store, fake_clerk, first_fill)
    payers(fake_clerk)
    mine = next(
        o
        for o in fake_clerk.lists["subscription_items"].values()
        if o["payer"]["user_id"] == "user_a"
    )
    data = clerk_subscription_item(
        item_id=mine["id"],
        user_id="user_a",
        status="canceled",
        created_at=mine["created_at"],
        updated_at=mine["updated_at"] + 10,
        webhook=True,
    )
    body = {"type": "subscriptionItem.canceled", "object": "event", "data": data}

    listener = AfterCommand(when, lambda: deliver(store, body))
    commands = Commands()
    run_heard(store, fake_clerk, listener, commands)
    assert listener.done
    assert plan(store, USER, "user_a") == ("pro", "canceled")
    assert updates_of(commands, store.users.name)[-3:] == ["update", "find", "update"]


def test_a_prune_stopped_before_its_recompute_is_finished_by_the_next_run(
    store: Store, fake_clerk: FakeClerk, faulty: tuple[Store, Any]
) -> None:
    """user_b's team item is gone from Clerk: the prune deletes it, then the database fails
    the plan's update. The next run finds no orphan left, and still recomputes the plan
    (the record the prune wrote before its deletes)."""
    payers(fake_clerk)
    run(store, fake_clerk)
    assert plan(store, USER, "user_b") == ("team", "active")
    team = next(
        i
        for i, o in fake_clerk.lists["subscription_items"].items()
        if o["payer"]["user_id"] == "user_b" and o["status"] == "active"
    )
    del fake_clerk.lists["subscription_items"][team]
    own, fail = faulty
    fail("update")
    gateway = ClerkGateway(SECRET_KEY, api_url=fake_clerk.url)
    with pytest.raises(ClerkSyncError):
        reconcile(own, gateway, rate=1000, prune=True, allow_mass_prune=True)
    assert (
        store.collection(SUBSCRIPTION_ITEM).count_documents({store.key(SUBSCRIPTION_ITEM): team})
        == 0
    )
    assert plan(store, USER, "user_b") == ("team", "active")  # deleted, not yet recomputed

    run(store, fake_clerk)
    assert plan(store, USER, "user_b") == ("free", "ended")


@pytest.mark.parametrize("first_fill", [True, False], ids=["first-fill", "items-stored"])
def test_a_payer_created_after_the_guess_of_an_object_since_deleted_keeps_no_plan(
    store: Store, fake_clerk: FakeClerk, first_fill: bool
) -> None:
    """The run's guess counts user_c's item (user_c is not stored); before its guessed
    update, the item is deleted (its recompute leaves user_c a marker) and user_c signs up
    (its creation finds the marker and writes its fields, and a token). The guess then
    misses user_c, whose plan stays empty: it has no item."""
    when = guess_made(store, fake_clerk, first_fill)
    payers(fake_clerk)
    item = fake_clerk.add_object("subscription_items", clerk_subscription_item(user_id="user_c"))
    signup = event("user.created", clerk_user(user_id="user_c", updated_at=500))

    def deleted_then_signed_up() -> None:
        assert writer_of(store).delete(SUBSCRIPTION_ITEM, item["id"]).outcome == "applied"
        deliver(store, signup)

    listener = AfterCommand(when, deleted_then_signed_up)
    run_heard(store, fake_clerk, listener)
    assert listener.done
    assert store.collection(USER).count_documents({store.key(USER): "user_c"}) == 1
    assert plan(store, USER, "user_c") == (None, None)
    assert plan(store, USER, "user_a") == ("pro", "active")


def test_the_payer_of_an_updated_item_is_read_not_guessed(
    store: Store, fake_clerk: FakeClerk
) -> None:
    """An item Clerk updated was recomputed onto its payer before: the run reads the
    payer's token first, and sends one update (no guess to miss)."""
    payers(fake_clerk)
    run(store, fake_clerk)
    mine = next(
        o
        for o in fake_clerk.lists["subscription_items"].values()
        if o["payer"]["user_id"] == "user_a"
    )
    mine.update(status="past_due", updated_at=mine["updated_at"] + 10)
    commands = Commands()
    run_heard(store, fake_clerk, commands)
    assert plan(store, USER, "user_a") == ("pro", "past_due")
    items = store.collection(SUBSCRIPTION_ITEM).name
    wrote = max(
        n
        for n, (name, body) in enumerate(commands.sent)
        if body.get(name) == items and name == "update"
    )
    after = Commands()
    after.sent = commands.sent[wrote:]
    assert updates_of(after, store.users.name) == ["find", "update"]


def items_read(store: Store, commands: Commands) -> int:
    """The run's reads of subscription items by payer after its items went in (the
    recompute's: a new user's creation reads its items before)."""
    items = store.collection(SUBSCRIPTION_ITEM).name
    via = store.schema.section(SUBSCRIPTION_ITEM).require("payer_user_id")
    sent = commands.sent
    first = next(n for n, (name, body) in enumerate(sent) if body.get("insert") == items)
    return sum(
        1
        for name, body in sent[first:]
        if name == "find" and body.get("find") == items and via in (body.get("filter") or {})
    )


def test_a_first_fill_guesses_from_what_it_wrote_reading_no_item(
    store: Store, fake_clerk: FakeClerk
) -> None:
    """The items' collection is empty when the run begins: the payers' plans come from the
    items its page wrote, with no read of them; the users' one guessed update lands."""
    payers(fake_clerk)
    commands = Commands()
    run_heard(store, fake_clerk, commands)
    assert plan(store, USER, "user_a") == ("pro", "active")
    assert plan(store, USER, "user_b") == ("team", "active")
    assert items_read(store, commands) == 0
    items = store.collection(SUBSCRIPTION_ITEM).name
    first = next(n for n, (_, body) in enumerate(commands.sent) if body.get("insert") == items)
    after = Commands()
    after.sent = commands.sent[first:]
    assert updates_of(after, store.users.name) == ["update"]  # guessed, and landed


def test_an_item_stored_before_the_run_counts_in_its_payers_guess(
    store: Store, fake_clerk: FakeClerk
) -> None:
    """user_b's active team item is stored, but no recompute ever wrote its plan (as when
    the app's mapping gained the plan fields since); Clerk also lists an ended free item
    the database lacks. The run creates that one and, the collection not being empty,
    reads user_b's items for its guess: the plan is the team item's, not the new one's.
    (The read was always made; this guards the first-fill rule's condition.)"""
    fake_clerk.add_user(user_id="user_b", created_at=10, updated_at=10)
    team = fake_clerk.add_object(
        "subscription_items", clerk_subscription_item(user_id="user_b", plan="team")
    )
    run(store, fake_clerk)
    names = store.schema.derived(USER)
    token = rollups.token_field(SUBSCRIPTION_ITEM)
    unset = {"$unset": {names["plan"]: "", names["plan_status"]: "", token: ""}}
    store.users.update_one({store.key(USER): "user_b"}, unset)
    assert plan(store, USER, "user_b") == (None, None)
    ended = clerk_subscription_item(
        user_id="user_b", status="ended", plan="free", amount=0, created_at=team["created_at"] - 5
    )
    fake_clerk.add_object("subscription_items", ended)
    commands = Commands()
    run_heard(store, fake_clerk, commands)
    assert items_read(store, commands) >= 1
    assert plan(store, USER, "user_b") == ("team", "active")


def test_a_payer_reconcile_creates_after_its_items_went_answers_their_marker(
    store: Store, fake_clerk: FakeClerk
) -> None:
    """An item of user_c (not stored) was delivered, leaving a marker, then deleted. The run
    creates user_c: its page reads the marker with its tombstones, as a signup does, writes
    user_c's fields and a token although no item is left, and removes the marker (before,
    nothing ever read it again)."""
    fake_clerk.add_user(user_id="user_c", created_at=10, updated_at=10)
    data = clerk_subscription_item(item_id="csub_item_c1", user_id="user_c", webhook=True)
    deliver(store, {"type": "subscriptionItem.active", "object": "event", "data": data})
    marker = {"_id": rollups.WAITING + "user_c"}
    assert store.tombstones.find_one(marker) is not None
    assert writer_of(store).delete(SUBSCRIPTION_ITEM, "csub_item_c1").outcome == "applied"
    run(store, fake_clerk)
    assert store.tombstones.find_one(marker) is None
    assert plan(store, USER, "user_c") == (None, None)
    held = store.users.find_one({store.key(USER): "user_c"}) or {}
    assert bk.field(held, rollups.token_field(SUBSCRIPTION_ITEM), None) is not None


def test_a_page_the_apps_index_refused_still_gives_its_new_payers_their_plan(
    store: Store, fake_clerk: FakeClerk
) -> None:
    """user_u's item came before user_u (a marker). The run's page inserts user_u, but the
    app's unique username index refuses user_x (user_w has its username): the run fails,
    and user_u, which went in, already has its plan (a rerun would find user_u unchanged
    and never recompute it)."""
    store.users.create_index("username", unique=True, name="username_1")
    fake_clerk.add_user(user_id="user_u", email="u@example.com", username="u", created_at=10)
    fake_clerk.add_user(user_id="user_w", email="w@example.com", username="dup", created_at=11)
    fake_clerk.add_user(user_id="user_x", email="x@example.com", username="dup", created_at=12)
    data = clerk_subscription_item(item_id="csub_item_u1", user_id="user_u", webhook=True)
    deliver(store, {"type": "subscriptionItem.active", "object": "event", "data": data})
    with pytest.raises(ClerkSyncError, match="username_1"):
        run(store, fake_clerk)
    assert store.users.count_documents({store.key(USER): "user_u"}) == 1
    assert plan(store, USER, "user_u") == ("pro", "active")
    assert store.tombstones.find_one({"_id": rollups.WAITING + "user_u"}) is None


def test_more_than_a_chunk_of_marked_payers_get_their_token(
    store: Store, fake_clerk: FakeClerk
) -> None:
    """51 payers' items came before them and are gone; the run creates all 51 in one page
    while no item is stored. Each still gets its fields and a token, and its marker goes
    (the shortcut for a page of new users with no item stored is not taken for them)."""
    users = [f"user_k{n:02d}" for n in range(51)]
    for n, user_id in enumerate(users):
        fake_clerk.add_user(user_id=user_id, email=f"k{n}@example.com", created_at=10 + n)
        item_id = f"csub_item_k{n:02d}"
        data = clerk_subscription_item(item_id=item_id, user_id=user_id, webhook=True)
        deliver(store, {"type": "subscriptionItem.active", "object": "event", "data": data})
        assert writer_of(store).delete(SUBSCRIPTION_ITEM, item_id).outcome == "applied"
    run(store, fake_clerk)
    token = rollups.token_field(SUBSCRIPTION_ITEM)
    held = store.users.count_documents({store.key(USER): {"$in": users}, token: {"$exists": True}})
    assert held == 51
    assert store.tombstones.count_documents({"_id": {"$regex": "^" + rollups.WAITING}}) == 0


def test_a_payer_whose_insert_stopped_before_its_marker_read_gets_its_plan_next_run(
    store: Store, fake_clerk: FakeClerk, fail_points: Any
) -> None:
    """user_c's item came before user_c (a marker). The run inserts user_c, then the database
    fails every read and the run stops before the page's marker read. The rerun finds user_c
    unchanged, and still gives it its plan (its sweep answers markers of stored payers: before,
    nothing ever read this one again)."""
    fake_clerk.add_user(user_id="user_c", created_at=10, updated_at=10)
    data = clerk_subscription_item(item_id="csub_item_c1", user_id="user_c", webhook=True)
    fake_clerk.add_object("subscription_items", data)
    deliver(store, {"type": "subscriptionItem.active", "object": "event", "data": data})
    marker = {"_id": rollups.WAITING + "user_c"}
    assert store.tombstones.find_one(marker) is not None
    name = f"stop-{uuid.uuid4().hex[:8]}"
    users = store.users.name
    reads_fail = AfterCommand(
        lambda e: e.command_name == "insert" and e.command.get("insert") == users,
        lambda: fail_points(
            "alwaysOn", {"failCommands": ["find"], "appName": name, "errorCode": 50}
        ),
    )
    stopping = listened(store, reads_fail, appname=name)
    try:
        with pytest.raises(ClerkSyncError):
            run(stopping, fake_clerk)
    finally:
        stopping.client.close()
    assert reads_fail.done
    assert store.users.count_documents({store.key(USER): "user_c"}) == 1
    assert plan(store, USER, "user_c") == (None, None)
    assert store.tombstones.find_one(marker) is not None
    assert records(store) == []  # no job's record names user_c: only its marker does

    again = run(store, fake_clerk)
    assert again.kinds["user"].unchanged == 1
    assert plan(store, USER, "user_c") == ("pro", "active")
    assert store.tombstones.find_one(marker) is None
