"""The app's own indexes: respected, never swallowed, never fought (the guide's Mongoose model
declares email and username unique)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator

import pytest

from clerksync.deliverylog.readers import show_delivery
from clerksync.devtools.payloads import clerk_user, event
from clerksync.doctor.database import check_app_collection
from clerksync.kinds.user import USER, parse_clerk_user
from clerksync.settings import load_settings
from clerksync.store.database import Store
from clerksync.store.lookups import find_user
from tests.conftest import WEBHOOK_SECRET
from tests.support.fakeclerk import FakeClerk
from tests.support.receiver import RunningReceiver, post
from tests.support.writes import upsert

FAST = ("--rate", "1000")


def guide_indexes(store: Store) -> set[str]:
    """What Mongoose's autoIndex does for the guide's model: clerkId, email and username
    unique, each on its own, an error swallowed. Returns the names it could build."""
    from pymongo.errors import OperationFailure

    built = set()
    for field in ("clerkId", "email", "username"):
        with contextlib.suppress(OperationFailure):
            built.add(store.users.create_index(field, unique=True, name=f"{field}_1"))
    return built


@pytest.fixture
def running(store: Store, webhook_secret: str) -> Iterator[RunningReceiver]:
    """A receiver started after the test set the collection up (``receiver`` starts first)."""
    holder: list[RunningReceiver] = []

    def start() -> RunningReceiver:
        holder.append(RunningReceiver(load_settings()).start())
        return holder[0]

    yield start  # type: ignore[misc]
    for receiver in holder:
        receiver.stop()


@pytest.mark.parametrize("then", ["svix retry", "events replay --failed"])
def test_a_unique_username_index_fails_the_delivery_until_it_is_fixed(
    store: Store, running: object, cli: object, then: str
) -> None:
    guide_indexes(store)
    receiver = running()  # type: ignore[operator]
    first = event("user.created", clerk_user(user_id="user_p1", email="p1@x.com"))
    second = event("user.created", clerk_user(user_id="user_p2", email="p2@x.com"))
    assert post(receiver.url, WEBHOOK_SECRET, first).status_code == 200
    refused = post(receiver.url, WEBHOOK_SECRET, second, msg_id="msg_p2")
    assert refused.status_code == 503  # both have no username: null twice
    assert refused.json()["outcome"] == "failed" and "username_1" in refused.json()["error"]
    receiver.receiver.log.flush_now()
    entry = show_delivery(store, "msg_p2").delivery
    assert entry.outcome == "failed" and "username_1" in (entry.error or "")
    assert store.users.count_documents({"clerkId": "user_p2"}) == 0
    flagged = {c.name: c for c in check_app_collection(store)}
    assert flagged["unique index username_1"].status == "fail"  # user_p1 holds null
    assert any("partialFilterExpression" in c for c in flagged["unique index username_1"].commands)
    # The operator applies doctor's fix; Svix's retry (same svix-id) stores the user.
    store.users.drop_index("username_1")
    store.users.create_index(
        "username",
        unique=True,
        name="username_1",
        partialFilterExpression={"username": {"$type": "string"}},
    )
    if then == "svix retry":
        retried = post(receiver.url, WEBHOOK_SECRET, second, msg_id="msg_p2")
        assert retried.status_code == 200 and retried.json()["outcome"] == "applied"
    else:
        replayed = cli("events", "replay", "--failed", "--json")  # type: ignore[operator]
        assert replayed.exit_code == 0, replayed.stderr
        assert [r["outcome"] for r in json.loads(replayed.stdout)] == ["applied"]
    assert store.users.count_documents({"clerkId": "user_p2"}) == 1
    after = {c.name: c.status for c in check_app_collection(store)}
    assert "unique index username_1" not in after
    assert after["clerksync indexes"] == "pass" and after["schema"] == "pass"


@pytest.mark.parametrize("order", ["app-first", "clerksync-first"])
def test_app_indexes_built_first_or_after_live_with_clerksyncs(
    store: Store, cli: object, fake_clerk: FakeClerk, order: str
) -> None:
    store.users.drop_indexes()
    store.deliveries.drop_indexes()
    if order == "app-first":
        guide_indexes(store)
        report = store.ensure_indexes()
    else:
        report = store.ensure_indexes()
        # Mongoose's autoIndex: email and username build; its clerkId_1 meets ours (same
        # key, another filter) and Mongoose swallows that: uniqueness is enforced either way.
        assert {"email_1", "username_1"} <= guide_indexes(store)
    assert report.failures == () and report.clerk_id_enforced
    names = {i["name"]: i for i in store.users.list_indexes()}
    assert {"clerkId_1", "email_1", "username_1", "clerksync_dueAt"} <= set(names)
    assert all(names[n].get("unique") for n in ("clerkId_1", "email_1", "username_1"))
    ttl = [i for i in store.deliveries.list_indexes() if "expireAfterSeconds" in i]
    assert len(ttl) == 1
    # the maintenance commands work on it
    fake_clerk.add_user(user_id="user_m1", email="m1@x.com", username="m1")
    fake_clerk.add_user(user_id="user_m2", email="m2@x.com", username="m2")
    for args in (("reconcile",), ("sync-metadata",), ("promote", "user_m1")):
        result = cli(*args, "--json", *(FAST if args[0] != "promote" else ()))  # type: ignore[operator]
        assert result.exit_code == 0, (args, result.stderr)
    assert find_user(store, "user_m1")["isAdmin"] is True


def test_documents_without_a_clerk_id_never_block_clerksyncs_index(store: Store) -> None:
    store.users.drop_indexes()
    store.users.insert_many(
        [{"email": "admin@app.com"}, {"email": "legacy@app.com"}, {"clerkId": None}, {}]
    )
    report = store.ensure_indexes()
    assert report.clerk_id_enforced and report.failures == ()
    store.users.insert_one({"email": "another@app.com"})  # the app can still write its own


def test_reconcile_refused_by_an_app_index_is_a_clear_failure(
    store: Store, cli: object, fake_clerk: FakeClerk
) -> None:
    store.users.create_index("username", unique=True, name="username_1")
    store.users.insert_one({"username": "taken", "email": "owner@app.com"})
    fake_clerk.add_user(user_id="user_t", email="t@x.com", username="taken")
    result = cli("reconcile", *FAST)  # type: ignore[operator]
    assert result.exit_code == 1
    assert "username_1" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


def test_the_receiver_refuses_deliveries_until_clerk_id_uniqueness_is_enforced(
    store: Store, running: object
) -> None:
    store.users.drop_indexes()
    store.users.insert_many([{"clerkId": "user_twin"}, {"clerkId": "user_twin"}])
    receiver = running()  # type: ignore[operator]
    payload = event("user.created", clerk_user(user_id="user_w"))
    refused = post(receiver.url, WEBHOOK_SECRET, payload, msg_id="msg_w")
    assert refused.status_code == 503 and "uniqueness" in refused.json()["error"]
    assert store.count() == 2  # nothing written
    store.users.delete_one({"clerkId": "user_twin"})
    deadline = time.monotonic() + 10
    while not receiver.receiver.indexes_ready.is_set() and time.monotonic() < deadline:
        time.sleep(0.1)
    accepted = post(receiver.url, WEBHOOK_SECRET, payload, msg_id="msg_w")
    assert accepted.status_code == 200, accepted.text
    assert store.has_unique_clerk_index()


def test_doctor_json_names_a_refusing_index(store: Store, cli: object) -> None:
    store.users.create_index("email", unique=True, name="email_1")
    upsert(store, USER, parse_clerk_user(clerk_user(user_id="user_e", emails=[], username="e")))
    result = cli("doctor", "--json")  # type: ignore[operator]
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["unique index email_1"]["status"] == "fail"  # user_e holds null
    assert "without an email" in checks["unique index email_1"]["detail"]


def test_maintenance_commands_refuse_to_write_without_clerk_id_uniqueness(
    store: Store, cli: object, fake_clerk: FakeClerk
) -> None:
    store.users.drop_indexes()
    store.users.insert_many([{"clerkId": "user_twin"}, {"clerkId": "user_twin"}])
    fake_clerk.add_user(user_id="user_other")
    result = cli("reconcile", *FAST)  # type: ignore[operator]
    assert result.exit_code == 1
    assert "duplicate values" in result.stderr and "no unique index" in result.stderr
    assert store.count() == 2
    assert any("expireAfterSeconds" in i for i in store.deliveries.list_indexes())
