"""The receiver over HTTP with svix-signed deliveries, against the real wire server."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from clerksync.deliverylog.readers import show_delivery
from clerksync.deliverylog.records import iter_records
from clerksync.devtools.payloads import clerk_user, deleted_user, event
from clerksync.kinds.user import USER
from clerksync.mapping.users import public_view
from clerksync.store.database import Store
from clerksync.store.lookups import find_user
from tests.conftest import ALL_SCHEMAS, WEBHOOK_SECRET
from tests.support.receiver import RunningReceiver, post
from tests.support.writes import upsert


def created(**kw: object) -> dict:
    return event("user.created", clerk_user(**kw))


@ALL_SCHEMAS
def test_created_user_is_stored_and_acknowledged(receiver: RunningReceiver, store: Store) -> None:
    response = post(receiver.url, WEBHOOK_SECRET, created(user_id="user_new", email="n@x.com"))
    assert response.status_code == 200
    assert response.json() == {"outcome": "applied"}
    view = public_view(find_user(store, "user_new"), store.schema.users)
    assert view["email"] == "n@x.com" and view["isAdmin"] is False


@pytest.mark.parametrize(
    "tamper",
    ["forged", "tampered", "stale", "future", "bad-header", "no-comma", "missing", "not-utf8"],
)
def test_unverifiable_deliveries_are_400_and_write_nothing(
    receiver: RunningReceiver, store: Store, tamper: str
) -> None:
    payload = created(user_id="user_evil")
    body = json.dumps(payload).encode()
    if tamper == "forged":
        response = post(receiver.url, "whsec_" + "QUJD" * 8, payload)
    elif tamper == "tampered":
        from clerksync.clerk.webhooks import sign

        headers = sign(WEBHOOK_SECRET, body)
        response = httpx.post(receiver.url, content=body.replace(b"Ada", b"Eve"), headers=headers)
    # Timestamps travel as whole seconds: 10 s past the 5-minute edge, not 1 s, or the
    # rounding can land exactly on it.
    elif tamper == "stale":
        response = post(receiver.url, WEBHOOK_SECRET, payload, timestamp=time.time() - 310)
    elif tamper == "future":
        response = post(receiver.url, WEBHOOK_SECRET, payload, timestamp=time.time() + 310)
    elif tamper == "bad-header":
        response = post(
            receiver.url, WEBHOOK_SECRET, payload, headers={"svix-signature": "v1,!!notbase64!!"}
        )
    elif tamper == "no-comma":
        response = post(receiver.url, WEBHOOK_SECRET, payload, headers={"svix-signature": "junk"})
    elif tamper == "missing":
        response = httpx.post(receiver.url, content=body)
    else:
        from clerksync.clerk.webhooks import sign

        response = httpx.post(
            receiver.url, content=b"\xff\xfe" + body, headers=sign(WEBHOOK_SECRET, body)
        )
    assert response.status_code == 400
    assert store.count() == 0


def test_oversized_body_is_413(receiver: RunningReceiver, store: Store) -> None:
    payload = created(user_id="user_big")
    payload["padding"] = "x" * (1024 * 1024)
    assert post(receiver.url, WEBHOOK_SECRET, payload).status_code == 413
    assert store.count() == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({"type": "user.created", "data": "x"}).encode(),
        json.dumps(event("user.created", {**clerk_user(), "id": {"$ne": ""}})).encode(),
        json.dumps(event("user.updated", {**clerk_user(), "updated_at": "soon"})).encode(),
        json.dumps(event("user.deleted", {"id": {"$gt": ""}, "deleted": True})).encode(),
    ],
)
def test_signed_but_malformed_payload_is_400(
    receiver: RunningReceiver, store: Store, raw: bytes
) -> None:
    upsert(
        store, USER, __import__("clerksync.kinds.user").kinds.user.parse_clerk_user(clerk_user())
    )
    response = post(receiver.url, WEBHOOK_SECRET, None, raw=raw)
    assert response.status_code == 400
    assert store.count() == 1  # nothing written, nothing deleted


def test_other_event_types_are_acknowledged_and_ignored(
    receiver: RunningReceiver, store: Store
) -> None:
    response = post(receiver.url, WEBHOOK_SECRET, event("session.created", {"id": "sess_1"}))
    assert response.status_code == 200 and response.json()["outcome"] == "ignored"
    assert store.count() == 0


@ALL_SCHEMAS
def test_retried_delivery_is_a_duplicate(receiver: RunningReceiver, store: Store) -> None:
    payload = created(user_id="user_dup")
    first = post(receiver.url, WEBHOOK_SECRET, payload, msg_id="msg_same")
    again = post(receiver.url, WEBHOOK_SECRET, payload, msg_id="msg_same")
    new_id = post(receiver.url, WEBHOOK_SECRET, payload, msg_id="msg_other")
    assert [r.json()["outcome"] for r in (first, again, new_id)] == [
        "applied",
        "duplicate",
        "duplicate",
    ]
    assert store.count() == 1


@ALL_SCHEMAS
def test_concurrent_duplicates_make_one_user_and_no_500(
    receiver: RunningReceiver, store: Store
) -> None:
    payload = created(user_id="user_conc")
    statuses: list[int] = []
    barrier = threading.Barrier(12)

    def send() -> None:
        barrier.wait()
        statuses.append(post(receiver.url, WEBHOOK_SECRET, payload, msg_id="msg_c").status_code)

    threads = [threading.Thread(target=send) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 12
    assert store.users.count_documents({store.clerk_id: "user_conc"}) == 1


@ALL_SCHEMAS
def test_out_of_order_update_before_create(receiver: RunningReceiver, store: Store) -> None:
    newer = event("user.updated", clerk_user(user_id="user_o", first_name="New", updated_at=2000))
    older = event("user.created", clerk_user(user_id="user_o", first_name="Old", updated_at=1000))
    assert post(receiver.url, WEBHOOK_SECRET, newer).json()["outcome"] == "applied"
    response = post(receiver.url, WEBHOOK_SECRET, older)
    assert response.status_code == 200 and response.json()["outcome"] == "stale"
    texts = [str(v) for v in find_user(store, "user_o").values()]
    assert any("New" in t for t in texts) and not any("Old" in t for t in texts)


@ALL_SCHEMAS
def test_late_update_never_resurrects_a_deleted_user(
    receiver: RunningReceiver, store: Store
) -> None:
    post(receiver.url, WEBHOOK_SECRET, created(user_id="user_del", updated_at=1000))
    gone = post(receiver.url, WEBHOOK_SECRET, event("user.deleted", deleted_user("user_del")))
    assert gone.json()["outcome"] == "applied"
    late = event("user.updated", clerk_user(user_id="user_del", updated_at=5000))
    assert post(receiver.url, WEBHOOK_SECRET, late).json()["outcome"] == "stale"
    assert store.users.count_documents({store.clerk_id: "user_del"}) == 0
    again = post(receiver.url, WEBHOOK_SECRET, event("user.deleted", deleted_user("user_del")))
    assert again.json()["outcome"] == "duplicate"


@ALL_SCHEMAS
def test_users_with_no_email_and_with_several(receiver: RunningReceiver, store: Store) -> None:
    post(receiver.url, WEBHOOK_SECRET, created(user_id="user_none", emails=[], username="u1"))
    many = clerk_user(user_id="user_many", emails=["a@x.com", "b@x.com", "c@x.com"])
    many["primary_email_address_id"] = many["email_addresses"][2]["id"]
    post(receiver.url, WEBHOOK_SECRET, event("user.created", many))
    assert public_view(find_user(store, "user_none"), store.schema.users)["email"] is None
    assert public_view(find_user(store, "user_many"), store.schema.users)["email"] == "c@x.com"


def test_delivery_log_records_outcomes_without_personal_data(
    receiver: RunningReceiver, store: Store
) -> None:
    post(
        receiver.url,
        WEBHOOK_SECRET,
        created(user_id="user_log", email="secret@x.com"),
        msg_id="msg_log1",
    )
    httpx.post(receiver.url, content=b"{}")
    receiver.receiver.log.flush_now()
    deadline = time.monotonic() + 5
    while len(list(iter_records(store))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    detail = show_delivery(store, "msg_log1")
    shown = detail.delivery
    assert shown.outcome == "applied" and shown.user_id == "user_log"
    assert shown.type == "user.created" and shown.duration_ms is not None
    assert shown.duration_ms >= 0
    entry = next(iter_records(store, svix_id="msg_log1"))  # no payload read
    assert entry["expiresAt"] > entry["receivedAt"]
    assert "secret@x.com" not in str(entry) + json.dumps(detail.to_json())
    assert detail.payload is not None
    assert json.loads(detail.payload)["data"]["id"] == "user_log"  # kept for replay
    assert next(iter_records(store, outcome="rejected"), None) is not None


def test_healthz(receiver: RunningReceiver) -> None:
    response = httpx.get(receiver.base + "/healthz")
    assert response.status_code == 200 and response.json()["ok"] is True


def test_serve_without_secret_exits_2(cli, db_env) -> None:
    result = cli("serve")
    assert result.exit_code == 2
    assert "WEBHOOK_SECRET is not set" in result.stderr and "Signing Secret" in result.stderr
