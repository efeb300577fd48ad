"""`clerksync events`: the delivery log over real deliveries, and replay."""

from __future__ import annotations

import json
import re
import time

import httpx

from clerksync.clerk.webhooks import sign
from clerksync.deliverylog.records import append_records
from clerksync.deliverylog.writer import DeliveryLog, RejectionSampler, record
from clerksync.devtools.payloads import clerk_user, event
from clerksync.settings import load_settings
from clerksync.store.database import Store
from clerksync.store.lookups import find_user
from clerksync.store.mongo import utcnow
from tests.conftest import WEBHOOK_SECRET
from tests.support.receiver import RunningReceiver, post


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
        "replay",
        "count",
    }
    assert "private@x.com" not in result.stdout
    only = json.loads(cli("events", "list", "--outcome", "applied", "--json").stdout)
    assert [r["id"] for r in only] == ["msg_ev1"]


def test_show_with_payload_and_stats(cli, receiver) -> None:
    deliver(receiver)
    shown = json.loads(cli("events", "show", "msg_ev1", "--payload", "--json").stdout)
    assert shown["payload"]["data"]["id"] == "user_ev"
    headers = shown["headers"]  # as it came, the signature masked (enough to tell two apart)
    assert headers["svix-id"] == "msg_ev1" and headers["svix-timestamp"].isdigit()
    assert re.fullmatch(r"v1,\S{4}…", headers["svix-signature"])
    text = cli("events", "show", "msg_ev1").stdout
    assert "header svix-id: msg_ev1" in text and "header svix-signature: v1," in text
    stats = json.loads(cli("events", "stats", "--json").stdout)
    assert stats["total"] == 3 and stats["outcomes"]["applied"]["count"] == 1
    assert cli("events", "show", "msg_missing").exit_code == 1


def test_replay_restores_a_user_removed_by_hand(cli, receiver, store: Store) -> None:
    deliver(receiver)
    store.users.delete_one({"clerkId": "user_ev"})
    result = cli("events", "replay", "msg_ev1", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)[0]["outcome"] == "applied"
    assert find_user(store, "user_ev")["email"] == "private@x.com"


def test_replay_failed_replays_exactly_the_failed_ones(cli, store: Store) -> None:
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


def test_a_replay_is_marked_and_leaves_the_original_readable(cli, receiver, store) -> None:
    deliver(receiver)
    for _ in range(2):  # a second replay finds the original's payload again
        replayed = cli("events", "replay", "msg_ev1", "--json")
        assert replayed.exit_code == 0, replayed.stderr
        assert json.loads(replayed.stdout)[0]["originalOutcome"] == "applied"
    shown = json.loads(cli("events", "show", "msg_ev1", "--payload", "--json").stdout)
    assert shown["outcome"] == "applied" and shown["payload"]["data"]["id"] == "user_ev"
    assert shown["attempts"] == 1
    assert [r["outcome"] for r in shown["replays"]] == ["duplicate", "duplicate"]
    rows = json.loads(cli("events", "list", "--json").stdout)
    assert [r["replay"] for r in rows if r["id"] == "msg_ev1"] == [True, True, False]
    assert "(replay)" in cli("events", "list").stdout
    stats = json.loads(cli("events", "stats", "--json").stdout)
    assert stats["total"] == 3 and stats["replays"] == 2


def test_doctor_probes_are_not_deliveries(cli, receiver, monkeypatch) -> None:
    from clerksync.doctor.receiver import probe_receiver
    from clerksync.settings import load_settings

    check = probe_receiver(load_settings(), receiver.url, WEBHOOK_SECRET)
    assert check is not None and check.status == "pass"
    deliver(receiver)
    stats = json.loads(cli("events", "stats", "--json").stdout)
    assert stats["total"] == 3 and "rejected" in stats["outcomes"]
    assert stats["outcomes"]["rejected"]["count"] == 1  # the delivery, not doctor's probe
    rows = json.loads(cli("events", "list", "--json").stdout)
    assert not [r for r in rows if r["id"].startswith("msg_clerksync_probe_")]


def test_replay_failed_skips_what_a_later_attempt_fixed(cli, store: Store) -> None:
    payload = json.dumps(event("user.created", clerk_user(user_id="user_fixed"))).encode()
    now = utcnow()
    for outcome in ("failed", "applied"):  # Svix retried, and the retry went through
        append_records(
            store,
            [
                record(
                    svix_id="msg_fixed",
                    event_type="user.created",
                    user_id="user_fixed",
                    outcome=outcome,
                    received_at=now,
                    duration_ms=1,
                    body=payload,
                )
            ],
        )
    result = cli("events", "replay", "--failed", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []


def test_replay_of_a_rejected_delivery_says_why(cli, receiver) -> None:
    deliver(receiver)
    result = cli("events", "replay", "msg_ev3")
    assert result.exit_code == 1 and "rejected (never verified)" in result.stderr


def test_tail_follow_prints_deliveries_as_they_arrive(receiver, db_env, tmp_path) -> None:
    import os
    import subprocess
    import sys
    import threading

    env = {**os.environ}
    proc = subprocess.Popen(
        [sys.executable, "-m", "clerksync", "events", "tail", "--follow", "--json",
         "--interval", "0.1", "--type", "user.created"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")))
    reader.start()
    try:
        assert proc.stderr is not None
        assert "Waiting for deliveries" in proc.stderr.readline()
        deliver(receiver)  # one user.created among three deliveries
        post(receiver.url, WEBHOOK_SECRET, event("user.created", clerk_user()), msg_id="msg_t2")
        receiver.receiver.log.flush_now()
        deadline = time.monotonic() + 20
        while len(lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(10)
        reader.join(10)
    shown = [json.loads(line) for line in lines]
    assert [d["id"] for d in shown] == ["msg_ev1", "msg_t2"]
    assert shown[0]["outcome"] == "applied" and shown[0]["type"] == "user.created"


def test_tail_without_follow_shows_the_last_ones_oldest_first(cli, receiver) -> None:
    deliver(receiver)
    result = cli("events", "tail", "--lines", "2")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert "session.created" in lines[0] and "[msg_ev2]" in lines[0] and "ignored" in lines[0]
    assert "rejected" in lines[1] and "error: signature" in lines[1]
    only = cli("events", "tail", "--outcome", "applied", "--json")
    assert [json.loads(x)["id"] for x in only.stdout.splitlines()] == ["msg_ev1"]


def test_stats_count_every_rejection_of_a_flood_even_the_sampled_ones(
    cli, store: Store, webhook_secret: str
) -> None:
    sampler = RejectionSampler(sample=5, window=60)
    running = RunningReceiver(load_settings(), log=DeliveryLog(store, sampler=sampler)).start()
    try:
        body = json.dumps(event("user.created", clerk_user(user_id="user_flood"))).encode()
        forged = sign("whsec_" + "QUJD" * 8, body)
        with httpx.Client() as client:
            for _ in range(40):
                assert client.post(running.url, content=body, headers=forged).status_code == 400
        summary = sampler.close_window(time.monotonic() + 61)  # as 60 s later
        assert summary is not None
        running.receiver.log.add(summary)
        running.receiver.log.flush_now()
    finally:
        running.stop()
    stats = json.loads(cli("events", "stats", "--json").stdout)
    assert stats["total"] == 40 and stats["outcomes"]["rejected"]["count"] == 40
    assert re.search(r"rejected\s+40\s", cli("events", "stats").stdout)
    rows = json.loads(cli("events", "list", "--json").stdout)
    assert sorted(r["count"] for r in rows) == [1] * 5 + [35]


def failed_delivery(store: Store, svix_id: str, user: dict) -> None:
    """A delivery the receiver logged as failed (as it does when the database refused it)."""
    body = json.dumps(event("user.created", user)).encode()
    entry = record(
        svix_id=svix_id,
        event_type="user.created",
        user_id=user["id"],
        outcome="failed",
        received_at=utcnow(),
        duration_ms=1,
        body=body,
    )
    append_records(store, [entry])


def test_one_delivery_that_stays_failed_does_not_block_the_others(cli, store: Store) -> None:
    store.users.create_index("username", unique=True, name="username_1")  # the app's own
    store.users.insert_one({"email": "app@x.com", "username": "taken"})
    failed_delivery(store, "msg_old", clerk_user(user_id="user_old", username="taken"))
    failed_delivery(store, "msg_new", clerk_user(user_id="user_new", username="fresh"))
    for attempt in range(2):
        result = cli("events", "replay", "--failed", "--json")
        assert result.exit_code == 1, result.stderr
        rows = {r["id"]: r for r in json.loads(result.stdout)}
        assert rows["msg_old"]["outcome"] == "failed"
        assert "username_1" in rows["msg_old"]["error"]
        if attempt == 0:  # the newer one went through, and is not replayed again
            assert rows["msg_new"]["outcome"] == "applied" and rows["msg_new"]["error"] is None
        else:
            assert set(rows) == {"msg_old"}
    clerk_id = store.schema.users.clerk_id
    assert store.users.count_documents({clerk_id: "user_new"}) == 1
    assert store.users.count_documents({clerk_id: "user_old"}) == 0
    shown = json.loads(cli("events", "show", "msg_old", "--json").stdout)
    assert [r["outcome"] for r in shown["replays"]] == ["failed", "failed"]
    text = cli("events", "replay", "--failed")
    assert text.exit_code == 1 and "1 still failed" in text.stderr and "username_1" in text.stdout


def test_replay_failed_holds_one_payload_at_a_time(store: Store) -> None:
    """40 failed deliveries of ~256 KB each (an end user's ``unsafe_metadata``, which does
    not compress): replaying them never holds them all in memory."""
    import base64
    import os
    import tracemalloc

    from clerksync.deliverylog.replay import replay

    now = utcnow()
    for i in range(40):
        user = clerk_user(user_id=f"user_big{i}")
        user["unsafe_metadata"] = {"blob": base64.b64encode(os.urandom(192 * 1024)).decode()}
        body = json.dumps(event("user.created", user)).encode()
        append_records(
            store,
            [
                record(
                    svix_id=f"msg_big{i}",
                    event_type="user.created",
                    user_id=f"user_big{i}",
                    outcome="failed",
                    received_at=now,
                    duration_ms=1,
                    body=body,
                )
            ],
        )
    tracemalloc.start()
    try:
        results = replay(store, failed=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r.outcome for r in results] == ["applied"] * 40
    assert [r.id for r in results] == [f"msg_big{i}" for i in range(40)]  # oldest first
    assert peak < 4 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB: the payloads were all held"
