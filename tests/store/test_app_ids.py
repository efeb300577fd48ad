"""The fastapi schema's ``user_id``: an atomic counter, above what the collection holds,
never reused, unique under concurrent signups and their retries."""

from __future__ import annotations

import threading
import time

import pytest

from clerksync.devtools.payloads import clerk_user, event
from clerksync.kinds.user import USER, parse_clerk_user
from clerksync.store.database import Store
from tests.conftest import WEBHOOK_SECRET
from tests.support.receiver import RunningReceiver, post
from tests.support.writes import page, upsert, user_hooks


def state(**kw: object) -> object:
    return parse_clerk_user(clerk_user(**kw))


@pytest.mark.parametrize("schema", ["fastapi"], indirect=True)
def test_app_ids_stay_unique_under_24_concurrent_signups_and_their_retries(
    store: Store,
) -> None:
    store.users.insert_one({"username": "seeded", "user_id": 40})  # the app's own, before us
    users = [state(user_id=f"user_s{n}", email=f"s{n}@x.com") for n in range(24)]
    barrier = threading.Barrier(24)

    def signup(n: int) -> None:
        barrier.wait()
        for _ in range(3):  # the delivery and two retries
            upsert(store, USER, users[n], likely_new=True)

    threads = [threading.Thread(target=signup, args=(n,)) for n in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [d["user_id"] for d in store.users.find({"clerk_user_id": {"$exists": True}})]
    assert len(ids) == 24 and len(set(ids)) == 24
    assert min(ids) > 40  # above what the collection already held
    fresh = Store(store.client, store.name, store.schema)  # another process, later
    assert user_hooks(fresh).allocate_app_ids()[0] > max(ids)


@pytest.mark.parametrize("schema", ["fastapi"], indirect=True)
def test_an_app_id_the_app_took_meanwhile_is_skipped(store: Store) -> None:
    store.users.create_index("user_id", unique=True, name="user_id_1")  # the app's
    upsert(store, USER, state(user_id="user_a", email="a@x.com"), likely_new=True)
    store.users.insert_one({"username": "by-script", "user_id": 2})  # the app's max + 1
    upsert(store, USER, state(user_id="user_b", email="b@x.com"), likely_new=True)
    ids = sorted(d["user_id"] for d in store.users.find({}, {"user_id": 1}))
    assert ids == [1, 2, 3]


@pytest.mark.parametrize("schema", ["fastapi"], indirect=True)
def test_bulk_updates_spend_no_app_ids_and_a_vanished_user_gets_one(store: Store) -> None:
    class Planned(Store):  # believes user_gone is stored: it was deleted meanwhile
        def _stored_versions(self, clerk_ids: list[str]) -> dict[str, object]:
            return {i: 1 for i in clerk_ids if i in ("user_1", "user_2", "user_gone")}

    page(store, USER, [state(user_id=f"user_{n}", updated_at=10) for n in (1, 2)])
    planned = Planned(store.client, store.name, store.schema)
    counts = page(
        planned, USER, [state(user_id=i, updated_at=20) for i in ("user_1", "user_2", "user_gone")]
    )
    assert (counts["updated"], counts["created"]) == (2, 1)
    ids = {d["clerk_user_id"]: d["user_id"] for d in store.users.find()}
    assert ids == {"user_1": 1, "user_2": 2, "user_gone": 3}
    assert user_hooks(store).allocate_app_ids()[0] == 4  # the updates spent none


@pytest.mark.parametrize("schema", ["fastapi"], indirect=True)
def test_24_concurrent_signups_through_the_receiver_get_distinct_ids(
    receiver: RunningReceiver, store: Store
) -> None:
    store.users.insert_one({"username": "seeded", "user_id": 7})
    barrier = threading.Barrier(24)
    statuses: list[int] = []

    def signup(n: int) -> None:
        body = event("user.created", clerk_user(user_id=f"user_h{n}", email=f"h{n}@x.com"))
        barrier.wait()
        for _ in range(2):  # the delivery and a duplicate of it
            # A 503 (the receiver's 1 s database deadline, on a loaded machine) is retried
            # as Svix would; what counts is the answer the delivery ends with.
            for _attempt in range(20):
                status = post(receiver.url, WEBHOOK_SECRET, body, msg_id=f"msg_h{n}").status_code
                if status != 503:
                    break
                time.sleep(0.2)
            statuses.append(status)

    threads = [threading.Thread(target=signup, args=(n,)) for n in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 48
    ids = [d["user_id"] for d in store.users.find({"clerk_user_id": {"$exists": True}})]
    assert len(ids) == 24 == len(set(ids)) and min(ids) > 7
