"""Crashes lose no write-back: the mark is in the same write as the state, a claim is a short
lease, and a `serve` killed with write-backs in flight has them finished soon after a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from pymongo import MongoClient, monitoring

from clerksync.devtools.payloads import clerk_user, event
from clerksync.kinds.user import USER, parse_clerk_user
from clerksync.mapping import bookkeeping as bk
from clerksync.mapping.users import wanted_metadata
from clerksync.store.database import Store
from clerksync.store.lookups import find_user
from clerksync.store.mongo import utcnow
from clerksync.store.users import set_admin
from clerksync.writeback.queue import LEASE, WriteBackQueue, queue_of
from tests.conftest import ALL_SCHEMAS, WEBHOOK_SECRET, free_port
from tests.support.fakeclerk import FakeClerk
from tests.support.receiver import post
from tests.support.writes import upsert


class Commands(monitoring.CommandListener):
    """Every command a client sends, by name (the real wire protocol, nothing patched)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@ALL_SCHEMAS
def test_the_echo_of_our_write_back_agrees_in_one_write_under_every_schema(
    store: Store,
) -> None:
    user = clerk_user(user_id="user_echo")
    assert upsert(store, USER, parse_clerk_user(user), likely_new=True).wants_write_back
    claimed = queue_of(store).claim(store.clerk_key("user_echo"))
    assert claimed is not None
    wanted = wanted_metadata(claimed, store.schema.users)
    assert queue_of(store).finish([(claimed, wanted, True)]) == 0
    # Clerk's user.updated answering our write: it names exactly what we wrote.
    echo = {**user, "updated_at": user["updated_at"] + 1, "public_metadata": wanted}
    result = upsert(store, USER, parse_clerk_user(echo))
    assert result.outcome == "applied" and not result.wants_write_back
    assert queue_of(store).pending() == 0
    # An admin change on our side makes the same copy differ: marked in that one write.
    set_admin(store, claimed["_id"], True)
    again = {**echo, "updated_at": echo["updated_at"] + 1}
    assert upsert(store, USER, parse_clerk_user(again)).wants_write_back
    assert queue_of(store).pending() == 1


def test_a_differing_clerk_copy_is_stored_and_marked_in_one_write(
    store: Store, mongo_url: str
) -> None:
    user = clerk_user(user_id="user_drift")
    upsert(store, USER, parse_clerk_user(user), likely_new=True)
    doc = find_user(store, "user_drift")
    queue_of(store).finish([(doc, {"userMongoId": str(doc["_id"]), "isAdmin": False}, True)])
    listener = Commands()
    watched = Store(MongoClient(mongo_url, tz_aware=True, event_listeners=[listener]), store.name)
    # Clerk's copy now names another id (a restored database): a write-back is due.
    drifted = {**user, "updated_at": user["updated_at"] + 1}
    drifted["public_metadata"] = {"userMongoId": "0123456789abcdef01234567", "isAdmin": False}
    result = upsert(watched, USER, parse_clerk_user(drifted))
    assert result.outcome == "applied" and result.wants_write_back
    changed = [cmd for name, cmd in listener.sent if name in ("update", "insert", "delete")]
    writes = [u for cmd in changed for u in cmd.get("updates", []) if "$inc" in u["u"]]
    # The only write that changed the document carried the mark with the state: a crash
    # cannot fall between storing Clerk's copy and marking the write-back.
    assert len(writes) == 1 and bk.DUE in writes[0]["u"]["$set"]
    assert [name for name, _ in listener.sent if name == "find"] == []  # no read in between
    after = find_user(store, "user_drift")
    assert bk.has(after, bk.DUE) and bk.field(after, bk.SEEN)["userMongoId"].startswith("0123")
    watched.close()


def test_a_crash_between_clerk_write_and_finish_is_redone_after_the_lease(
    store: Store,
) -> None:
    upsert(store, USER, parse_clerk_user(clerk_user(user_id="user_lease")), likely_new=True)
    key = store.clerk_key("user_lease")
    dead = WriteBackQueue(store.users, store.schema, lease=timedelta(seconds=1))
    alive = WriteBackQueue(store.users, store.schema, lease=timedelta(seconds=1))
    claimed = dead.claim(key)
    assert claimed is not None  # ...and the process dies after writing to Clerk, before finish
    assert alive.claim(key) is None  # the lease keeps a second writer out
    retry_at = alive.next_try(key)
    assert retry_at is not None and retry_at <= claimed["clerksync"]["leaseUntil"]
    time.sleep(1.1)
    again = alive.claim(key)
    assert again is not None and bk.field(again, bk.SEQ) == bk.field(claimed, bk.SEQ)
    assert alive.finish([(again, {"userMongoId": str(again["_id"]), "isAdmin": False}, True)]) == 0
    assert queue_of(store).pending() == 0
    # the dead process's late finish changes nothing: it no longer owns the claim
    dead.finish([(claimed, {}, True)])
    assert bk.field(find_user(store, "user_lease"), bk.SEEN)["userMongoId"] == str(again["_id"])


def serve(env: dict[str, str], port: int, cwd: Path) -> subprocess.Popen[bytes]:
    """``clerksync serve``, its log kept in ``cwd`` (``serve_logs`` reads it on a failure)."""
    with open(cwd / f"serve-{time.monotonic_ns()}.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "clerksync", "serve", "--port", str(port)],
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=log,
        )


def serve_logs(cwd: Path) -> str:
    return "\n".join(f"{p.name}:\n{p.read_text()[-4000:]}" for p in sorted(cwd.glob("serve-*.log")))


def wait_until(condition, timeout: float) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
    return time.monotonic() - started


def test_serve_killed_with_write_backs_claimed_finishes_them_soon_after_restart(
    store: Store, fake_clerk: FakeClerk, db_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **db_env,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CLERK_SECRET_KEY": fake_clerk.secret_key,
        "CLERK_API_URL": fake_clerk.url,
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/webhooks/clerk"
    fake_clerk.latency = 5.0  # Clerk is slow: the claimed writes are in flight at the kill
    proc = serve(env, port, tmp_path)
    try:
        wait_until(lambda: _listening(port), 30)
        users = [fake_clerk.add_user(user_id=f"user_kill{n}") for n in range(8)]
        for user in users:
            assert post(url, WEBHOOK_SECRET, event("user.created", user)).status_code == 200
        claimed = {bk.LEASE_OWNER: {"$exists": True}}
        wait_until(lambda: store.users.count_documents(claimed) >= 2, 10)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = utcnow()
        held_docs = list(store.users.find(claimed))
        held = len(held_docs)
        assert held >= 2 and queue_of(store).pending() == 8
        # What makes the restart finish them soon: a dead process's claim blocks its user
        # for at most one short lease past the kill (renewals included), not indefinitely.
        for doc in held_docs:
            assert bk.field(doc, bk.LEASE_UNTIL) <= killed_at + LEASE
        fake_clerk.latency = 0.0
        proc = serve(env, port, tmp_path)
        restarted = time.monotonic()
        # A generous deadline, not a timing assertion: the machine may be loaded.
        try:
            wait_until(lambda: queue_of(store).pending() == 0, 120)
        except AssertionError:
            due = [d["clerksync"] for d in store.users.find({bk.DUE: {"$exists": True}})]
            raise AssertionError(f"still due: {due}\n{serve_logs(tmp_path)}") from None
        took = time.monotonic() - restarted
    finally:
        proc.kill()
        proc.wait(10)
    print(f"held {held}, resumed in {took:.1f} s")
    for user in users:
        doc = find_user(store, user["id"])
        assert fake_clerk.users[user["id"]]["public_metadata"]["userMongoId"] == str(doc["_id"])


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False
