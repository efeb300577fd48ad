"""Write-back to Clerk after the 2xx: lands through 5xx and 429, survives restarts,
never loops on Clerk's echo, and two receivers on one database write once."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
from secantus import SecantusDBServer  # at import: see tests/receiver/test_outage.py

from clerksync.devtools.payloads import clerk_user, event
from clerksync.settings import load_settings
from clerksync.store.connect import connect
from clerksync.store.database import Store
from clerksync.store.lookups import find_user
from clerksync.store.users import set_admin
from clerksync.writeback.queue import queue_of
from tests.conftest import WEBHOOK_SECRET, free_port, stop_in_process_server
from tests.support.fakeclerk import FakeClerk
from tests.support.receiver import RunningReceiver, post

FAST = {"writeback_base_delay": 0.05, "writeback_poll": 0.05}


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def start(receivers: list[RunningReceiver], **options: object) -> RunningReceiver:
    running = RunningReceiver(load_settings(), **{**FAST, **options}).start()
    receivers.append(running)
    return running


def signup(fake: FakeClerk, url: str, user_id: str, **kw: object) -> dict:
    user = fake.add_user(user_id=user_id, **kw)
    assert post(url, WEBHOOK_SECRET, event("user.created", user)).status_code == 200
    return user


def in_sync(fake: FakeClerk, store: Store, user_id: str) -> bool:
    doc = store.users.find_one({"clerkId": user_id})
    meta = fake.users[user_id]["public_metadata"]
    return (
        doc is not None
        and meta.get("userMongoId") == str(doc["_id"])
        and (meta.get("isAdmin") is doc["isAdmin"])
        and "dueAt" not in doc.get("clerksync", {})
    )


def test_write_back_merges_and_keeps_other_keys(
    receivers, store: Store, fake_clerk: FakeClerk
) -> None:
    running = start(receivers)
    signup(fake_clerk, running.url, "user_wb", public_metadata={"plan": "pro"})
    wait_for(lambda: in_sync(fake_clerk, store, "user_wb"))
    assert fake_clerk.users["user_wb"]["public_metadata"]["plan"] == "pro"


def test_clerk_echo_of_our_write_does_not_loop(
    receivers, store: Store, fake_clerk: FakeClerk
) -> None:
    running = start(receivers)
    signup(fake_clerk, running.url, "user_echo")
    wait_for(lambda: in_sync(fake_clerk, store, "user_echo"))
    echo = event("user.updated", dict(fake_clerk.users["user_echo"]))
    assert post(running.url, WEBHOOK_SECRET, echo).json()["outcome"] == "applied"
    time.sleep(0.5)
    assert len(fake_clerk.metadata_writes) == 1
    assert "dueAt" not in find_user(store, "user_echo")["clerksync"]


def test_write_back_lands_through_5xx(receivers, store: Store, fake_clerk: FakeClerk) -> None:
    running = start(receivers)
    fake_clerk.fail_next(3, status=503)
    response = post(
        running.url, WEBHOOK_SECRET, event("user.created", fake_clerk.add_user(user_id="user_5xx"))
    )
    assert response.status_code == 200
    wait_for(lambda: in_sync(fake_clerk, store, "user_5xx"))


def test_write_back_honours_429_retry_after(receivers, store: Store, fake_clerk: FakeClerk) -> None:
    fake_clerk.per_user_metadata_limit = 1
    fake_clerk.window = 1.0
    running = start(receivers)
    signup(fake_clerk, running.url, "user_429")
    wait_for(lambda: in_sync(fake_clerk, store, "user_429"))
    # promote twice in a row: the second write meets the per-user limit, waits, then lands
    doc = find_user(store, "user_429")
    set_admin(store, doc["_id"], True)
    running.receiver.workers.wake()
    wait_for(lambda: in_sync(fake_clerk, store, "user_429"))
    set_admin(store, doc["_id"], False)
    running.receiver.workers.wake()
    wait_for(lambda: in_sync(fake_clerk, store, "user_429"))
    assert fake_clerk.users["user_429"]["public_metadata"]["isAdmin"] is False


def test_user_gone_from_clerk_is_not_retried(
    receivers, store: Store, fake_clerk: FakeClerk
) -> None:
    running = start(receivers)
    ghost = clerk_user(user_id="user_ghost")  # never added to the fake: Clerk answers 404
    # from the key's own instance (a 404 is believed once the database is bound to it)
    post(
        running.url,
        WEBHOOK_SECRET,
        event("user.created", ghost, instance_id=fake_clerk.instance_id),
    )
    wait_for(lambda: "dueAt" not in find_user(store, "user_ghost")["clerksync"])
    assert "not found" in find_user(store, "user_ghost")["clerksync"]["error"]


def test_pending_write_backs_survive_a_restart(
    receivers, store: Store, fake_clerk: FakeClerk, monkeypatch
) -> None:
    monkeypatch.delenv("CLERK_SECRET_KEY")
    without_key = start(receivers)
    for n in range(3):
        signup(fake_clerk, without_key.url, f"user_wait{n}")
    assert queue_of(store).pending() == 3
    without_key.stop()
    receivers.remove(without_key)
    monkeypatch.setenv("CLERK_SECRET_KEY", fake_clerk.secret_key)
    start(receivers)
    wait_for(lambda: all(in_sync(fake_clerk, store, f"user_wait{n}") for n in range(3)))
    assert queue_of(store).pending() == 0


def test_two_receivers_on_one_database_apply_and_write_back_once(
    receivers, store: Store, fake_clerk: FakeClerk
) -> None:
    first = start(receivers)
    second = RunningReceiver(load_settings(), store=connect(load_settings()), **FAST).start()
    receivers.append(second)
    users = [fake_clerk.add_user(user_id=f"user_pair{n}") for n in range(10)]
    with httpx.Client() as client:
        for n, user in enumerate(users):
            for running in (first, second):
                payload = event("user.created", user)
                assert (
                    post(
                        running.url, WEBHOOK_SECRET, payload, msg_id=f"msg_p{n}", client=client
                    ).status_code
                    == 200
                )
    wait_for(lambda: all(in_sync(fake_clerk, store, u["id"]) for u in users))
    assert store.count() == 10
    written = [user_id for user_id, _ in fake_clerk.metadata_writes]
    assert sorted(written) == sorted(u["id"] for u in users)


def test_database_outage_answers_503_then_the_retry_succeeds(
    tmp_path: Path, webhook_secret: str, monkeypatch
) -> None:
    server = SecantusDBServer(port=free_port(), storage_path=str(tmp_path / "db"))
    server.start()
    port = server.port
    monkeypatch.setenv("MONGODB_URL", f"mongodb://127.0.0.1:{port}/?directConnection=true")
    monkeypatch.setenv("CLERKSYNC_MONGO_TIMEOUT_MS", "1000")
    running = RunningReceiver(load_settings()).start()
    try:
        payload = event("user.created", clerk_user(user_id="user_outage"))
        stop_in_process_server(server)
        started = time.monotonic()
        down = post(running.url, WEBHOOK_SECRET, payload, msg_id="msg_out")
        assert down.status_code == 503
        assert time.monotonic() - started < 5
        server = SecantusDBServer(port=port, storage_path=str(tmp_path / "db"))
        server.start()
        up = post(running.url, WEBHOOK_SECRET, payload, msg_id="msg_out")
        assert up.status_code == 200 and up.json()["outcome"] == "applied"
        assert find_user(running.receiver.store, "user_outage")["clerkId"] == "user_outage"
    finally:
        running.stop()
        stop_in_process_server(server)
