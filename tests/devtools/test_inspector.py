"""``clerksync inspect`` over HTTP: what its pages show (and do not), replay, the chart,
doctor, and who may use it. Deliveries come from the real receiver, signed with svix."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from clerksync.deliverylog.readers import show_delivery
from clerksync.devtools.inspector import check_bind
from clerksync.devtools.payloads import clerk_user, event
from clerksync.doctor.checks import Check
from clerksync.errors import UsageError
from clerksync.store.database import Store
from tests.conftest import WEBHOOK_SECRET
from tests.support.inspector import RunningInspector
from tests.support.receiver import RunningReceiver, post

HX = {"hx-request": "true"}


@pytest.fixture
def inspector(store: Store) -> Iterator[RunningInspector]:
    checks = [
        Check("MongoDB", "pass", "reachable"),
        Check("CLERK_SECRET_KEY", "fail", "unset", "set it"),
    ]
    running = RunningInspector(store, doctor=lambda: checks).start()
    try:
        yield running
    finally:
        running.stop()


def deliver(receiver: RunningReceiver, payload: dict[str, Any], msg_id: str) -> int:
    status = post(receiver.url, WEBHOOK_SECRET, payload, msg_id=msg_id).status_code
    receiver.receiver.log.flush_now()
    return status


def ids_listed(html: str) -> list[str]:
    return re.findall(r'data-id="([^"]*)"', html)


def test_the_list_filters_combined_and_shows_no_email(
    receiver: RunningReceiver, inspector: RunningInspector
) -> None:
    ada = clerk_user(user_id="user_i1", email="ada@x.com", updated_at=1_000)
    deliver(receiver, event("user.created", ada), "msg_i1")
    deliver(receiver, event("user.updated", {**ada, "updated_at": 500}), "msg_i2")  # stale
    deliver(receiver, event("user.created", clerk_user(user_id="user_i2")), "msg_i3")
    deliver(receiver, event("session.created", {"id": "sess_1"}), "msg_i4")

    page = httpx.get(inspector.base + "/").text
    assert ids_listed(page) == ["msg_i4", "msg_i3", "msg_i2", "msg_i1"]  # newest first
    assert "@" not in page.split("<table", 1)[1]  # no email in the list
    only = httpx.get(inspector.base + "/", params={"object": "user_i1"}).text
    assert ids_listed(only) == ["msg_i2", "msg_i1"]
    both = httpx.get(inspector.base + "/", params={"object": "user_i1", "outcome": "applied"})
    assert ids_listed(both.text) == ["msg_i1"]
    typed = httpx.get(inspector.base + "/", params={"type": "user.created", "since": "10m"})
    assert ids_listed(typed.text) == ["msg_i3", "msg_i1"]
    assert ids_listed(httpx.get(inspector.base + "/", params={"until": "10m"}).text) == []
    wrong = httpx.get(inspector.base + "/", params={"outcome": "great"})
    assert wrong.status_code == 400 and "--outcome" in wrong.text


def test_rows_answer_204_until_the_log_changes(
    receiver: RunningReceiver, inspector: RunningInspector
) -> None:
    deliver(receiver, event("user.created", clerk_user(user_id="user_r1")), "msg_r1")
    page = httpx.get(inspector.base + "/").text
    marker = re.search(r"seen=([0-9a-f-]+)", page)
    assert marker is not None
    assert httpx.get(inspector.base + "/rows", params={"seen": marker[1]}).status_code == 204
    deliver(receiver, event("user.created", clerk_user(user_id="user_r2")), "msg_r2")
    fresh = httpx.get(inspector.base + "/rows", params={"seen": marker[1]})
    assert fresh.status_code == 200 and ids_listed(fresh.text) == ["msg_r2", "msg_r1"]


def test_a_bucket_that_sorts_before_the_newest_still_changes_the_version(
    receiver: RunningReceiver, inspector: RunningInspector, store: Store
) -> None:
    """``_id`` order is only near write order across processes (a CLI replay's bucket can
    sort before the receiver's of the same second): the list must still see it."""
    from datetime import timedelta

    from bson import ObjectId

    from clerksync.deliverylog.writer import record
    from clerksync.store.mongo import utcnow

    deliver(receiver, event("user.created", clerk_user(user_id="user_o1")), "msg_o1")
    page = httpx.get(inspector.base + "/").text
    seen = re.search(r"seen=([0-9a-f-]+)", page)
    assert seen is not None
    entry = record(
        svix_id="msg_o0",
        event_type="user.created",
        user_id=None,
        outcome="applied",
        received_at=utcnow(),
        duration_ms=1.0,
    )
    earlier = ObjectId.from_datetime(utcnow() - timedelta(seconds=5))
    store.deliveries.insert_one(
        {
            "_id": earlier,
            "firstAt": entry["receivedAt"],
            "expiresAt": entry["expiresAt"],
            "records": [entry],
        }
    )
    fresh = httpx.get(inspector.base + "/rows", params={"seen": seen[1]})
    assert fresh.status_code == 200 and "msg_o0" in ids_listed(fresh.text)


def test_a_delivery_page_shows_headers_masked_payload_and_what_changed(
    receiver: RunningReceiver, inspector: RunningInspector
) -> None:
    ada = clerk_user(user_id="user_d1", email="ada@x.com", updated_at=1_000)
    deliver(receiver, event("user.created", ada), "msg_d1")
    deliver(
        receiver,
        event("user.updated", {**ada, "last_name": "Byron", "updated_at": 2_000}),
        "msg_d2",
    )
    page = httpx.get(inspector.base + "/deliveries/msg_d2").text
    assert "ada@x.com" in page  # the payload, on its own page
    changed = re.findall(r'data-path="([^"]+)"', page)
    assert changed == ["last_name", "updated_at"]
    assert '&#34;Lovelace&#34;</td><td>→</td><td class="mono new">&#34;Byron&#34;' in page
    signature = re.search(r"<dt>svix-signature</dt><dd>([^<]*)</dd>", page)
    assert signature is not None and re.fullmatch(r"v1,\S{4}…", signature[1])
    first = httpx.get(inspector.base + "/deliveries/msg_d1").text
    assert "The first delivery for user_d1" in first
    assert httpx.get(inspector.base + "/deliveries/msg_nope").status_code == 404


def test_replay_takes_events_replays_path_and_is_logged_as_one(
    receiver: RunningReceiver, inspector: RunningInspector, store: Store
) -> None:
    deliver(receiver, event("user.created", clerk_user(user_id="user_p1")), "msg_p1")
    answer = httpx.post(inspector.base + "/deliveries/msg_p1/replay", headers=HX)
    assert answer.status_code == 200
    assert "duplicate" in answer.text and "(was applied)" in answer.text
    assert 'hx-swap-oob="true"' in answer.text  # the page's replays list is redrawn
    detail = show_delivery(store, "msg_p1")
    assert [r.outcome for r in detail.replays] == ["duplicate"]
    assert detail.attempts == 1


def test_replay_all_failed_shows_the_count_first(
    store: Store, webhook_secret: str, receivers: list[Any]
) -> None:
    from clerksync.settings import load_settings

    store.users.create_index("username", unique=True, name="username_1")
    running = RunningReceiver(load_settings()).start()
    receivers.append(running)
    for n in range(3):  # no username: the second and third are refused by the app's index
        deliver(running, event("user.created", clerk_user(user_id=f"user_f{n}")), f"msg_f{n}")
    inspector = RunningInspector(store).start()
    try:
        page = httpx.get(inspector.base + "/").text
        assert (
            "Replay all failed (2)" in page and 'hx-confirm="Replay 2 failed deliveries?"' in page
        )
        store.users.drop_index("username_1")  # the operator's fix
        answer = httpx.post(inspector.base + "/replay-failed", headers=HX)
        assert answer.status_code == 200 and "Replayed 2." in answer.text
        assert "No failed delivery to replay." in httpx.get(inspector.base + "/").text
    finally:
        inspector.stop()


def test_the_chart_counts_deliveries_per_minute_by_outcome(
    receiver: RunningReceiver, inspector: RunningInspector
) -> None:
    created = event("user.created", clerk_user(user_id="user_c1"))
    deliver(receiver, created, "msg_c1")
    deliver(receiver, created, "msg_c1")  # Svix's retry
    deliver(receiver, event("session.created", {"id": "sess_1"}), "msg_c2")
    hour = httpx.get(inspector.base + "/chart").text
    legend = re.findall(r'<span class="swatch (\w+)"></span>\w+ (\d+)', hour)
    assert dict(legend) == {"applied": "1", "duplicate": "1", "ignored": "1"}
    assert hour.count('class="bar ') == 3  # one minute, three outcomes stacked
    assert httpx.get(inspector.base + "/chart", params={"window": "day"}).status_code == 200


def test_the_doctor_page_shows_the_checks_and_their_fixes(inspector: RunningInspector) -> None:
    assert 'hx-get="/doctor/checks"' in httpx.get(inspector.base + "/doctor").text
    checks = httpx.get(inspector.base + "/doctor/checks").text
    assert "MongoDB:" in checks and "fix: set it" in checks and "Some checks failed." in checks


def test_only_this_machine_or_the_token_holder_gets_in(store: Store) -> None:
    with pytest.raises(UsageError, match="not a loopback address"):
        check_bind("0.0.0.0", None)
    with pytest.raises(UsageError, match="16 characters"):
        check_bind("0.0.0.0", "short")
    check_bind("::1", None)
    check_bind("0.0.0.0", "t" * 20)

    local = RunningInspector(store).start()
    try:
        assert (
            httpx.get(local.base + "/")
            .headers["content-security-policy"]
            .startswith("default-src 'self'")
        )
        rebound = httpx.get(local.base + "/", headers={"host": "evil.example:80"})
        assert rebound.status_code == 403  # a DNS name pointed at 127.0.0.1
        assert httpx.post(local.base + "/replay-failed").status_code == 403  # a plain form
        foreign = {**HX, "origin": "http://evil.example"}
        assert httpx.post(local.base + "/replay-failed", headers=foreign).status_code == 403
        assert httpx.post(local.base + "/replay-failed", headers=HX).status_code == 200
    finally:
        local.stop()

    token = "s3cret-token-of-the-inspector"
    guarded = RunningInspector(store, token=token).start()
    try:
        assert httpx.get(guarded.base + "/").status_code == 401
        assert httpx.get(guarded.base + "/", params={"token": "wrong" * 5}).status_code == 401
        with httpx.Client(base_url=guarded.base) as browser:
            first = browser.get("/", params={"token": token, "outcome": "failed"})
            assert first.status_code == 303 and first.headers["location"] == "/?outcome=failed"
            assert "HttpOnly" in first.headers["set-cookie"]
            assert browser.get("/").status_code == 200  # the cookie from now on
    finally:
        guarded.stop()


def test_inspect_refuses_a_public_bind_without_a_token(cli: Any, db_env: Any) -> None:
    result = cli("inspect", "--host", "0.0.0.0")
    assert result.exit_code == 2
    assert "not a loopback address" in result.stderr and "--token" in result.stderr
