"""``ensure_user``: the app's document for a Clerk user id, whether or not a webhook brought
it: one indexed read when stored; fetched from Clerk and written through the one write
path when missing; never a deleted user back; nothing written on any failure."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import clerksync
from clerksync.app.ensure import Ensurer, close_default
from clerksync.clerk.gateway import ClerkGateway
from clerksync.devtools.payloads import clerk_user, event
from clerksync.errors import ClerkApiError, UserDeleted, UserNotFound
from clerksync.kinds.user import USER, parse_clerk_user
from clerksync.mapping import bookkeeping as bk
from clerksync.store.database import Store
from clerksync.store.mongo import utcnow
from tests.conftest import ALL_SCHEMAS
from tests.support.commands import Commands
from tests.support.fakeclerk import SECRET_KEY, FakeClerk
from tests.support.writes import delete, upsert


def gets(fake: FakeClerk) -> int:
    return fake.counts["GET /users/{id}"]


@ALL_SCHEMAS
def test_a_missing_user_is_fetched_and_written_as_a_delivery_would(
    ensurer: Ensurer, store: Store, fake_clerk: FakeClerk
) -> None:
    users = store.schema.users
    fake_clerk.add_user(user_id="user_new", email="new@example.com", first_name="Nia")
    doc = ensurer.ensure("user_new")
    assert doc[users.clerk_id] == "user_new" and doc[users.email] == "new@example.com"
    assert store.count() == 1 and gets(fake_clerk) == 1
    assert bk.has(doc, bk.DUE)  # its write-back is due, as a delivery's would be
    if users.app_id:
        assert isinstance(doc[users.app_id], int)
    assert ensurer.ensure("user_new")["_id"] == doc["_id"]
    assert gets(fake_clerk) == 1  # stored now: no second call


def test_a_stored_user_costs_one_indexed_read_and_no_clerk_call(
    watched: tuple[Store, Commands], fake_clerk: FakeClerk
) -> None:
    store, commands = watched
    user = parse_clerk_user(clerk_user(user_id="user_here"))
    upsert(store, USER, user, likely_new=True)
    ensurer = Ensurer(store, ClerkGateway(SECRET_KEY, api_url=fake_clerk.url))
    commands.sent.clear()
    before = fake_clerk.total_requests()
    assert ensurer.ensure("user_here")["clerkId"] == "user_here"
    assert commands.names() == ["find"]
    [(_, command)] = commands.sent
    assert command["filter"] == {"clerkId": "user_here"}  # the unique Clerk-id index's key
    assert fake_clerk.total_requests() == before


def test_a_deleted_user_is_not_brought_back_and_clerk_is_not_asked(
    ensurer: Ensurer, store: Store, fake_clerk: FakeClerk
) -> None:
    fake_clerk.add_user(user_id="user_gone")  # Clerk still answers (its webhook came first)
    delete(store, USER, "user_gone")
    with pytest.raises(UserDeleted, match="user_gone"):
        ensurer.ensure("user_gone")
    assert store.count() == 0 and gets(fake_clerk) == 0


def test_an_unknown_id_is_user_not_found_and_writes_nothing(
    ensurer: Ensurer, store: Store, fake_clerk: FakeClerk
) -> None:
    with pytest.raises(UserNotFound, match="user_nobody"):
        ensurer.ensure("user_nobody")
    assert store.count() == 0 and gets(fake_clerk) == 1


@pytest.mark.parametrize("bad", ["", "clerk_34", "user_1 OR 1", {"$ne": None}, None])
def test_what_is_not_a_clerk_user_id_is_refused_before_any_read(
    ensurer: Ensurer, store: Store, fake_clerk: FakeClerk, bad: Any
) -> None:
    store.users.insert_one({"clerkId": "clerk_34", "email": "app@example.com"})
    with pytest.raises(UserNotFound, match="not a Clerk user id"):
        ensurer.ensure(bad)
    assert fake_clerk.total_requests() == 0


@pytest.mark.parametrize("status", [500, 503, 429])
def test_clerk_failing_is_a_clear_error_and_writes_nothing(
    ensurer: Ensurer, store: Store, fake_clerk: FakeClerk, status: int
) -> None:
    fake_clerk.add_user(user_id="user_wait")
    fake_clerk.fail_path("/users/user_wait", status)
    with pytest.raises(ClerkApiError, match=str(status)) as raised:
        ensurer.ensure("user_wait")
    assert raised.value.retryable
    assert store.count() == 0
    assert ensurer.ensure("user_wait")["clerkId"] == "user_wait"  # Clerk back: it works


def test_clerk_unreachable_is_a_clear_error(store: Store) -> None:
    gateway = ClerkGateway(SECRET_KEY, api_url="http://127.0.0.1:9/v1", timeout_ms=500)
    with pytest.raises(ClerkApiError, match="cannot reach the Clerk API"):
        Ensurer(store, gateway).ensure("user_x")
    assert store.count() == 0


def test_without_a_secret_key_a_stored_user_is_still_found(store: Store) -> None:
    from clerksync.errors import ConfigError

    upsert(store, USER, parse_clerk_user(clerk_user(user_id="user_here")), likely_new=True)
    ensurer = Ensurer(store, None)
    assert ensurer.ensure("user_here")["clerkId"] == "user_here"
    with pytest.raises(ConfigError, match="CLERK_SECRET_KEY is not set"):
        ensurer.ensure("user_elsewhere")


def test_an_older_update_after_the_ensured_state_changes_nothing(
    ensurer: Ensurer, store: Store, fake_clerk: FakeClerk
) -> None:
    now = int(utcnow().timestamp() * 1000)
    fake_clerk.add_user(user_id="user_o", first_name="New", updated_at=now)
    ensurer.ensure("user_o")
    older = parse_clerk_user(clerk_user(user_id="user_o", first_name="Old", updated_at=now - 5))
    assert upsert(store, USER, older).outcome == "stale"
    assert store.users.find_one({"clerkId": "user_o"})["firstName"] == "New"


@pytest.mark.parametrize("schema", ["fastapi"], indirect=True)
def test_concurrent_calls_for_one_new_user_share_one_fetch_and_one_write(
    ensurer: Ensurer, store: Store, fake_clerk: FakeClerk
) -> None:
    fake_clerk.add_user(user_id="user_rush", email="rush@example.com")
    fake_clerk.latency = 0.05  # every caller is waiting while the first one fetches
    start = threading.Barrier(50)
    found: list[Any] = []

    def first_request() -> None:
        start.wait()
        found.append(ensurer.ensure("user_rush"))

    threads = [threading.Thread(target=first_request) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 50 and len({d["_id"] for d in found}) == 1
    assert store.count() == 1 and gets(fake_clerk) == 1
    [counter] = list(store.counters.find())
    assert counter["seq"] == found[0]["user_id"]  # one app id handed out, no gap


def test_the_async_form_does_not_block_the_loop(
    ensurer: Ensurer, store: Store, fake_clerk: FakeClerk
) -> None:
    fake_clerk.add_user(user_id="user_async")
    fake_clerk.latency = 0.2

    async def main() -> tuple[list[dict[str, Any]], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beat = asyncio.create_task(ticker())
        docs = await asyncio.gather(*(ensurer.ensure_async("user_async") for _ in range(10)))
        beat.cancel()
        return list(docs), ticks

    docs, ticks = asyncio.run(main())
    assert {d["clerkId"] for d in docs} == {"user_async"} and store.count() == 1
    assert gets(fake_clerk) == 1
    assert ticks >= 5  # the loop ran while Clerk took 0.2 s to answer


def test_the_package_level_functions_read_the_settings(store: Store, fake_clerk: FakeClerk) -> None:
    fake_clerk.add_user(user_id="user_pkg")
    try:
        assert clerksync.ensure_user("user_pkg")["clerkId"] == "user_pkg"
        doc = asyncio.run(clerksync.ensure_user_async("user_pkg"))
        assert doc["clerkId"] == "user_pkg" and store.count() == 1
    finally:
        close_default()


def test_a_user_the_webhook_then_brings_is_a_duplicate(
    ensurer: Ensurer, store: Store, fake_clerk: FakeClerk, receiver: Any
) -> None:
    from tests.conftest import WEBHOOK_SECRET
    from tests.support.receiver import post

    data = fake_clerk.add_user(user_id="user_late")
    doc = ensurer.ensure("user_late")
    answer = post(receiver.url, WEBHOOK_SECRET, event("user.created", data))
    assert answer.json()["outcome"] == "duplicate"
    assert store.count() == 1 and store.users.find_one()["_id"] == doc["_id"]
