"""What keeps a write-back from being lost: a key of another Clerk instance (its 404s must
not drop anyone), the database being away (never parks), a change made during a failing
write (keeps its mark), a renamed admin key, and bulk updates whose Clerk copy disagrees."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pymongo import MongoClient

from clerksync.clerk.gateway import ClerkGateway
from clerksync.clerk.pacing import PerUserWindow, RetryPolicy, instance_pacer
from clerksync.devtools.payloads import clerk_user, event
from clerksync.jobs.metadata import sync_metadata
from clerksync.kinds.user import USER, parse_clerk_user
from clerksync.mapping import bookkeeping as bk
from clerksync.mapping.files import load_schema
from clerksync.settings import load_settings
from clerksync.store.database import Store
from clerksync.store.instance import InstanceMismatch, bind
from clerksync.store.lookups import find_user
from clerksync.store.users import set_admin
from clerksync.writeback.queue import queue_of
from clerksync.writeback.writeback import PARK_AFTER, LeaseKeeper, Limits, write_back, write_claimed
from tests.conftest import WEBHOOK_SECRET
from tests.support.fakeclerk import FakeClerk
from tests.support.receiver import RunningReceiver, post
from tests.support.writes import page, upsert
from tests.writeback.test_writeback import FAST, wait_for

PATCH = "PATCH /users/{id}/metadata"


def quick() -> Limits:
    return Limits(instance_pacer(1000), RetryPolicy(base=0.01, cap=0.05), PerUserWindow())


def test_workers_do_not_start_with_a_key_of_another_instance(
    receivers, store: Store, fake_clerk: FakeClerk
) -> None:
    bind(store, "ins_theirs", environment="development", source="test")
    fake_clerk.instance_id = "ins_other"  # the key reaches another instance
    running = RunningReceiver(load_settings(), **FAST).start()
    receivers.append(running)
    stranger = clerk_user(user_id="user_signup")  # not in the key's instance: 404 there
    assert post(running.url, WEBHOOK_SECRET, event("user.created", stranger)).status_code == 200
    workers = running.receiver.workers
    wait_for(lambda: workers.refused is not None)
    assert "ins_theirs" in workers.refused and "ins_other" in workers.refused
    time.sleep(0.3)  # several sweeps' worth (poll 0.05 s): nothing may be written or dropped
    assert fake_clerk.counts[PATCH] == 0
    assert queue_of(store).pending() == 1
    assert bk.field(find_user(store, "user_signup"), bk.ERROR) is None


def test_a_404_drops_nobody_once_the_database_is_bound_elsewhere(
    receivers, store: Store, fake_clerk: FakeClerk
) -> None:
    fake_clerk.instance_id = "ins_other"
    running = RunningReceiver(load_settings(), **FAST).start()  # unbound: the workers start
    receivers.append(running)
    wait_for(lambda: running.receiver.workers._threads[1:] != [])
    bind(store, "ins_theirs", environment="development", source="test")  # then bound
    stranger = clerk_user(user_id="user_later")
    assert post(running.url, WEBHOOK_SECRET, event("user.created", stranger)).status_code == 200
    wait_for(lambda: fake_clerk.counts[PATCH] >= 1)
    wait_for(
        lambda: "waits for the right key" in str(bk.field(find_user(store, "user_later"), bk.ERROR))
    )
    doc = find_user(store, "user_later")
    assert bk.has(doc, bk.DUE)  # held, not dropped: a right key writes it later


def test_a_404_is_not_believed_while_the_database_is_bound_to_no_instance(
    receivers, store: Store, fake_clerk: FakeClerk
) -> None:
    """The delivery names no instance, so nothing binds the database: a 404 cannot tell a
    user gone from Clerk from a key of another instance, and the write-back waits. Not for
    long: a delivery binds the database in a moment, so it is asked again soon (backing
    off), and once bound, the 404 is judged against the instance."""
    fake_clerk.instance_id = "ins_other"
    running = RunningReceiver(load_settings(), **FAST).start()
    receivers.append(running)
    stranger = clerk_user(user_id="user_unbound")  # not in the key's instance: 404 there
    assert post(running.url, WEBHOOK_SECRET, event("user.created", stranger)).status_code == 200
    wait_for(lambda: fake_clerk.counts[PATCH] >= 1)
    error = lambda: str(bk.field(find_user(store, "user_unbound"), bk.ERROR))  # noqa: E731
    wait_for(lambda: "bound to no Clerk instance" in error())
    assert bk.has(find_user(store, "user_unbound"), bk.DUE)  # held, not dropped
    bind(store, "ins_theirs", environment="development", source="test")  # as a delivery does
    wait_for(lambda: "ins_theirs" in error())  # asked again soon, not in max_delay (300 s)
    assert "ins_other" in error()
    assert bk.has(find_user(store, "user_unbound"), bk.DUE)


def test_a_new_databases_first_write_back_with_a_key_of_another_instance_is_held(
    receivers, store: Store, fake_clerk: FakeClerk
) -> None:
    """A new database, a key of another instance: the first delivery's 404 is never a drop,
    and the error names both instances. (The receiver binds the instance before it hands
    the user over; a worker's poll can still claim the user first, and hold it as bound to
    no instance yet: its retry, after the bind, names both. This checks the outcome, not
    the order.)"""
    fake_clerk.instance_id = "ins_other"
    running = RunningReceiver(load_settings(), **FAST).start()
    receivers.append(running)
    first = event("user.created", clerk_user(user_id="user_first"), instance_id="ins_theirs")
    assert post(running.url, WEBHOOK_SECRET, first).status_code == 200
    wait_for(lambda: fake_clerk.counts[PATCH] >= 1)
    error = lambda: str(bk.field(find_user(store, "user_first"), bk.ERROR))  # noqa: E731
    wait_for(lambda: "ins_theirs" in error())
    assert "ins_other" in error() and "waits for the right key" in error()
    assert bk.has(find_user(store, "user_first"), bk.DUE)


def test_promote_refuses_a_key_of_another_instance_before_any_change(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    user = fake_clerk.add_user(user_id="user_p")
    upsert(store, USER, parse_clerk_user(user), likely_new=True)
    bind(store, "ins_theirs", environment="development", source="test")
    fake_clerk.instance_id = "ins_other"
    result = cli("promote", "user_p")
    assert result.exit_code == 2
    assert "ins_theirs" in result.stderr and "nothing was changed" in result.stderr
    assert find_user(store, "user_p")["isAdmin"] is False
    assert fake_clerk.counts[PATCH] == 0


def test_sync_metadata_checks_the_instance_itself(store: Store, fake_clerk: FakeClerk) -> None:
    upsert(store, USER, parse_clerk_user(fake_clerk.add_user(user_id="user_s")), likely_new=True)
    bind(store, "ins_theirs", environment="development", source="test")
    fake_clerk.instance_id = "ins_other"
    gateway = ClerkGateway(fake_clerk.secret_key, api_url=fake_clerk.url)
    with pytest.raises(InstanceMismatch):
        sync_metadata(store, gateway, rate=1000)
    assert fake_clerk.counts[PATCH] == 0
    result = sync_metadata(store, gateway, rate=1000, rebind=True)
    assert (result.updated, result.bound, result.instance) == (1, "rebound", "ins_other")
    assert result.to_json() == {"total": 1, "updated": 1, "unchanged": 0, "failed": 0, "missing": 0}


def test_the_database_away_never_parks_after_clerk_failures(
    store: Store, fake_clerk: FakeClerk
) -> None:
    upsert(store, USER, parse_clerk_user(fake_clerk.add_user(user_id="user_t")), likely_new=True)
    gateway = ClerkGateway(fake_clerk.secret_key, api_url=fake_clerk.url)
    keeper = LeaseKeeper(queue_of(store))
    key = store.clerk_key("user_t")
    fake_clerk.fail_next(PARK_AFTER - 1, status=503)
    for _ in range(PARK_AFTER - 1):  # Clerk's failures: deferred, counted as attempts
        assert write_back(
            queue_of(store), gateway, key, quick(), keeper, due_only=False
        ).outcome == ("deferred")
    assert bk.field(find_user(store, "user_t"), bk.ATTEMPTS) == PARK_AFTER - 1
    # Then the database goes away while the write is finished: a real unreachable server.
    away = Store(
        MongoClient("mongodb://127.0.0.1:9/?directConnection=true", serverSelectionTimeoutMS=200),
        store.name,
        store.schema,
    )
    doc = queue_of(store).claim(key, due_only=False)
    assert doc is not None
    result = write_claimed(queue_of(store), gateway, doc, quick(), finish=queue_of(away).finish)
    keeper.stop()
    assert result.outcome == "deferred"
    stored = find_user(store, "user_t")
    assert bk.has(stored, bk.DUE) and not bk.has(stored, bk.PARKED)


def test_a_change_made_during_a_failing_write_keeps_its_mark_when_parked(
    store: Store, fake_clerk: FakeClerk
) -> None:
    upsert(store, USER, parse_clerk_user(fake_clerk.add_user(user_id="user_f")), likely_new=True)
    stuck = PARK_AFTER - 1  # failures that were not Clerk's, so far
    store.users.update_one({"clerkId": "user_f"}, {"$set": {bk.FAULTS: stuck, bk.ATTEMPTS: stuck}})
    gateway = ClerkGateway(fake_clerk.secret_key, api_url=fake_clerk.url)
    doc = queue_of(store).claim(store.clerk_key("user_f"), due_only=False)
    assert doc is not None
    set_admin(store, doc["_id"], True)  # a promote while the write runs: marked again

    def refused(done: object) -> int:
        store.db.command("clerksyncNoSuchCommand")  # the server refuses it: not Clerk's fault
        return 0

    result = write_claimed(queue_of(store), gateway, doc, quick(), finish=refused)
    assert result.outcome == "parked"
    stored = find_user(store, "user_f")
    assert bk.has(stored, bk.DUE) and not bk.has(stored, bk.LEASE_OWNER)  # promote still due


def test_a_renamed_admin_key_decides_the_admin_flag_on_insert(store: Store, tmp_path: Path) -> None:
    mapping = tmp_path / "schema.toml"
    mapping.write_text('preset = "nextjs"\n\n[users.metadata]\nisAdmin = ""\nstaff = "admin"\n')
    renamed = Store(store.client, store.name, load_schema(str(mapping)))
    user = clerk_user(user_id="user_staff", public_metadata={"staff": True})
    upsert(renamed, USER, parse_clerk_user(user), likely_new=True)
    assert find_user(renamed, "user_staff")["isAdmin"] is True
    other = clerk_user(user_id="user_old", public_metadata={"isAdmin": True})
    page(renamed, USER, [parse_clerk_user(other)])
    assert find_user(renamed, "user_old")["isAdmin"] is False  # the old key means nothing


@pytest.mark.parametrize("assume_new", [False, True])
def test_bulk_updates_queue_a_write_back_when_clerk_disagrees(
    store: Store, assume_new: bool
) -> None:
    users = [clerk_user(user_id=f"user_b{n}") for n in range(2)]
    page(store, USER, [parse_clerk_user(u) for u in users])
    store.users.update_many({}, {"$unset": {bk.DUE: ""}})  # written back already
    newer = []
    for n, user in enumerate(users):
        mongo_id = str(find_user(store, user["id"])["_id"])
        metadata = {"userMongoId": mongo_id, "isAdmin": n == 0}  # complete; user_b0's is wrong
        newer.append({**user, "updated_at": user["updated_at"] + 1, "public_metadata": metadata})
    counts = page(store, USER, [parse_clerk_user(u) for u in newer], assume_new=assume_new)
    assert counts["updated"] == 2
    assert bk.has(find_user(store, "user_b0"), bk.DUE)  # Clerk says admin, MongoDB does not
    assert not bk.has(find_user(store, "user_b1"), bk.DUE)  # Clerk agrees: nothing to write
