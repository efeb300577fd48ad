"""``/livez`` checks nothing but the process; ``/readyz`` the database, clerksync's indexes
and the Clerk-id uniqueness, naming what is missing. The outage is real: a SecantusDB server
of the test's own, stopped and started again on the same port."""

from __future__ import annotations

import time
from typing import Any

import httpx

from clerksync.devtools.payloads import clerk_user, event
from clerksync.settings import load_settings
from clerksync.store.database import Store
from tests.conftest import WEBHOOK_SECRET
from tests.receiver.test_outage import Database, database  # noqa: F401  (the fixture)
from tests.support.receiver import RunningReceiver, post


def until(check: Any, seconds: float = 20.0) -> float:
    """Poll ``check`` every 50 ms until it is true; the seconds it took (a bound, not a
    figure asserted: a shared machine's timings are noise)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "never happened"
        time.sleep(0.05)
    return time.monotonic() - started


def test_livez_answers_with_the_database_stopped_and_readyz_names_it(
    database: Database,  # noqa: F811
) -> None:
    running = RunningReceiver(load_settings()).start()
    try:
        ok = post(running.url, WEBHOOK_SECRET, event("user.created", clerk_user(user_id="user_p")))
        assert ok.status_code == 200
        ready = httpx.get(running.base + "/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["ok"] is True
        assert ready.json()["database"] == "outage"

        database.stop()
        live = httpx.get(running.base + "/livez", timeout=10)
        assert live.status_code == 200 and live.json() == {"ok": True}
        not_ready = httpx.get(running.base + "/readyz", timeout=10)
        assert not_ready.status_code == 503
        assert not_ready.json()["reason"].startswith("database: unreachable")

        database.start()
        seconds = until(lambda: httpx.get(running.base + "/readyz", timeout=10).status_code == 200)
        print(f"/readyz answered 200 {seconds:.2f} s after the database came back")
        assert httpx.get(running.base + "/livez", timeout=10).status_code == 200
    finally:
        running.stop()


def test_readyz_is_503_until_the_clerk_id_uniqueness_is_enforced(
    store: Store, webhook_secret: str, receivers: list[Any]
) -> None:
    """Two documents with one Clerk id: the unique index cannot be made, deliveries would be
    refused, so the process is not ready, and says why; once the duplicate is gone the
    index maker's retry makes it and the process is ready."""
    store.users.drop_index("clerkId_1")
    store.users.insert_many([{"clerkId": "user_dup"}, {"clerkId": "user_dup"}])
    running = RunningReceiver(load_settings()).start()
    receivers.append(running)
    not_ready = httpx.get(running.base + "/readyz", timeout=10)
    assert not_ready.status_code == 503
    reason = not_ready.json()["reason"]
    assert reason.startswith("indexes: Clerk-id uniqueness not enforced") and "clerkId" in reason
    assert httpx.get(running.base + "/livez", timeout=10).status_code == 200

    store.users.delete_one({"clerkId": "user_dup"})
    until(lambda: httpx.get(running.base + "/readyz", timeout=10).status_code == 200)
    assert httpx.get(running.base + "/readyz", timeout=10).json()["ok"] is True


def test_events_nothing_keeps_are_answered_while_the_database_is_away(
    database: Database,  # noqa: F811
) -> None:
    """A session event stores nothing: with the database stopped it is answered 200
    ``ignored`` at once (a 503 would have Svix retry every sign-in), a user's delivery still
    a 503; its delivery-log record waits in memory and is written once the database is
    back."""
    running = RunningReceiver(load_settings()).start()
    try:
        warm = event("user.created", clerk_user(user_id="user_s1"))
        assert post(running.url, WEBHOOK_SECRET, warm).status_code == 200
        database.stop()
        session = event("session.created", {"id": "sess_away", "user_id": "user_s1"})
        answer = post(running.url, WEBHOOK_SECRET, session, msg_id="msg_sess_away")
        assert answer.status_code == 200 and answer.json() == {"outcome": "ignored"}
        signup = event("user.created", clerk_user(user_id="user_s2"))
        assert post(running.url, WEBHOOK_SECRET, signup).status_code == 503

        database.start()
        until(lambda: post(running.url, WEBHOOK_SECRET, signup).status_code == 200, 60)
        until(lambda: running.receiver.log.flush_now(), 60)
        bucket = running.receiver.store.deliveries.find_one({"records.svixId": "msg_sess_away"})
        assert bucket is not None
        [record] = [r for r in bucket["records"] if r["svixId"] == "msg_sess_away"]
        assert record["outcome"] == "ignored" and record["type"] == "session.created"
    finally:
        running.stop()
