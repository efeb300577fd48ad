"""`clerksync events`: the delivery log over real deliveries, and replay."""

from __future__ import annotations

import json

import httpx

from clerksync.deliveries import append_records, record
from clerksync.mongo import utcnow
from clerksync.payloads import clerk_user, event
from clerksync.store import UserStore
from tests.conftest import WEBHOOK_SECRET
from tests.receiver import RunningReceiver, post


def deliver(receiver: RunningReceiver) -> None:
    post(
        receiver.url,
        WEBHOOK_SECRET,
        event("user.created", clerk_user(user_id="user_ev", email="private@x.com")),
        msg_id="msg_ev1",
    )
    post(receiver.url, WEBHOOK_SECRET, event("session.created", {"id": "s"}), msg_id="msg_ev2")
    httpx.post(receiver.url, content=b"{}", headers={"svix-id": "msg_ev3"})
    receiver.receiver.log.flush_now()


def test_list_shows_each_delivery_with_its_outcome_and_no_personal_data(cli, receiver) -> None:
    deliver(receiver)
    result = cli("events", "list", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {r["id"]: r for r in json.loads(result.stdout)}
    assert rows["msg_ev1"]["outcome"] == "applied" and rows["msg_ev1"]["userId"] == "user_ev"
    assert rows["msg_ev2"]["outcome"] == "ignored"
    assert rows["msg_ev3"]["outcome"] == "rejected"
    assert set(rows["msg_ev1"]) == {
        "id",
        "type",
        "objectId",
        "userId",
        "outcome",
        "receivedAt",
        "durationMs",
        "error",
    }
    assert "private@x.com" not in result.stdout
    only = json.loads(cli("events", "list", "--outcome", "applied", "--json").stdout)
    assert [r["id"] for r in only] == ["msg_ev1"]


def test_show_with_payload_and_stats(cli, receiver) -> None:
    deliver(receiver)
    shown = json.loads(cli("events", "show", "msg_ev1", "--payload", "--json").stdout)
    assert shown["payload"]["data"]["id"] == "user_ev"
    stats = json.loads(cli("events", "stats", "--json").stdout)
    assert stats["total"] == 3 and stats["outcomes"]["applied"]["count"] == 1
    assert cli("events", "show", "msg_missing").exit_code == 1


def test_replay_restores_a_user_removed_by_hand(cli, receiver, store: UserStore) -> None:
    deliver(receiver)
    store.users.delete_one({"clerkId": "user_ev"})
    result = cli("events", "replay", "msg_ev1", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)[0]["outcome"] == "applied"
    assert store.find_user("user_ev")["email"] == "private@x.com"


def test_replay_failed_replays_exactly_the_failed_ones(cli, store: UserStore) -> None:
    payloads = {
        f"msg_f{i}": event("user.created", clerk_user(user_id=f"user_f{i}")) for i in range(3)
    }
    now = utcnow()
    for i, (svix_id, payload) in enumerate(payloads.items()):
        append_records(
            store,
            [
                record(
                    svix_id=svix_id,
                    event_type="user.created",
                    user_id=f"user_f{i}",
                    outcome="failed" if i < 2 else "applied",
                    received_at=now,
                    duration_ms=1,
                    body=json.dumps(payload).encode(),
                )
            ],
        )
    result = cli("events", "replay", "--failed", "--json")
    assert result.exit_code == 0, result.stderr
    assert sorted(r["id"] for r in json.loads(result.stdout)) == ["msg_f0", "msg_f1"]
    assert store.users.count_documents({}) == 2
    assert cli("events", "replay").exit_code == 2
