"""``/metrics``: what a scripted mix of deliveries did, in Prometheus' text format, equal to
``events stats`` for the same window, with no id in any label; a registry of its own per
receiver; Clerk's answers counted by route and status, 429 included."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clerksync.clerk.webhooks import sign
from clerksync.devtools.payloads import clerk_user, event
from clerksync.settings import load_settings
from clerksync.store.database import Store
from tests.conftest import WEBHOOK_SECRET
from tests.support.fakeclerk import FakeClerk
from tests.support.receiver import RunningReceiver, post

#: every label name a clerksync metric may carry: none of them can hold an id
LABELS = {"type", "outcome", "reason", "result", "route", "status", "operation", "cause", "le"}
#: what an id or an email looks like (Clerk's prefixes, svix's, an address)
ID_LIKE = re.compile(r"(user|org|orgmem|msg|sess|ins|idn)_[A-Za-z0-9]|@")


def scrape(running: RunningReceiver) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``GET /metrics`` parsed by prometheus-client's own parser: sample name -> labels ->
    value (only clerksync's samples)."""
    answer = httpx.get(running.base + "/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name.startswith("clerksync_"):
                key = tuple(sorted(sample.labels.items()))
                samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def total(samples: dict[tuple[tuple[str, str], ...], float], **where: str) -> float:
    return sum(v for k, v in samples.items() if all((n, w) in k for n, w in where.items()))


@pytest.fixture
def running(store: Store, webhook_secret: str) -> Iterator[RunningReceiver]:
    """A receiver started after the app's own unique username index is in place (the
    guide's Mongoose model), so a second user without a username is a failed delivery."""
    store.users.create_index("username", unique=True, name="username_1")
    receiver = RunningReceiver(load_settings()).start()
    try:
        yield receiver
    finally:
        receiver.stop()


def send_mix(url: str) -> None:
    """applied, duplicate, stale, ignored, rejected (three reasons) and failed."""
    ada = clerk_user(user_id="user_m1", email="ada@x.com", username="ada", updated_at=2_000)
    grace = clerk_user(user_id="user_m2", email="grace@x.com", username="grace")
    for payload, msg_id in (
        (event("user.created", ada), "msg_m1"),
        (event("user.created", grace), "msg_m2"),
        (event("user.created", ada), "msg_m1"),  # Svix's retry: duplicate
        (event("user.updated", {**ada, "updated_at": 1_000}), "msg_m3"),  # stale
        (event("session.created", {"id": "sess_1", "user_id": "user_m1"}), "msg_m4"),
        (event("session.ended", {"id": "sess_1", "user_id": "user_m1"}), "msg_m5"),
        (event("user.created", clerk_user(user_id="user_m3", email="n1@x.com")), "msg_m6"),
        (event("user.created", clerk_user(user_id="user_m4", email="n2@x.com")), "msg_m7"),
    ):
        assert post(url, WEBHOOK_SECRET, payload, msg_id=msg_id).status_code in (200, 503)
    body = json.dumps(event("user.created", grace)).encode()
    assert httpx.post(url, content=body).status_code == 400  # no svix headers
    wrong = post(url, "whsec_" + "A" * 32, event("user.created", grace), msg_id="msg_m8")
    assert wrong.status_code == 400  # signed with another secret
    assert post(url, WEBHOOK_SECRET, {"type": "user.created"}, msg_id="msg_m9").status_code == 400


def test_metrics_after_a_scripted_mix_equal_events_stats_and_hold_no_id(
    running: RunningReceiver, cli: Any
) -> None:
    send_mix(running.url)
    running.receiver.log.flush_now()
    stats = json.loads(cli("events", "stats", "--json").stdout)
    samples = scrape(running)
    deliveries = samples["clerksync_deliveries_total"]

    by_outcome = {o: total(deliveries, outcome=o) for o in stats["outcomes"]}
    assert by_outcome == {o: v["count"] for o, v in stats["outcomes"].items()}
    assert {o: n for o, n in by_outcome.items()} == {
        "applied": 3,
        "duplicate": 1,
        "stale": 1,
        "ignored": 2,
        "rejected": 3,
        "failed": 1,
    }
    by_type = {dict(k)["type"]: 0.0 for k in deliveries}
    for k, v in deliveries.items():
        by_type[dict(k)["type"]] += v
    assert {t: n for t, n in by_type.items() if n} == stats["types"]
    assert sum(deliveries.values()) == stats["total"] == 11

    # the histogram counts every delivery; the lag every verified one
    assert samples["clerksync_delivery_duration_seconds_count"][()] == stats["total"]
    assert samples["clerksync_event_lag_seconds_count"][()] == stats["total"] - 2
    rejected = samples["clerksync_rejected_requests_total"]
    assert total(rejected, reason="signature") == 2
    assert total(rejected, reason="payload") == 1
    errors = samples["clerksync_database_errors_total"]
    assert total(errors, operation="delivery", cause="index") == 1

    for name, series in samples.items():
        for labels in series:
            assert {n for n, _ in labels} <= LABELS, (name, labels)
            assert not [v for _, v in labels if ID_LIKE.search(v)], (name, labels)


def test_each_receiver_has_a_registry_of_its_own(store: Store, receivers: list[Any]) -> None:
    """Two receivers in one process (two apps, a test suite) count apart, and neither
    touches prometheus-client's global registry, which an app may use for its own."""
    from prometheus_client import REGISTRY, Counter

    app_counter = Counter("clerksync_deliveries", "The app's own, same name", ["type", "outcome"])
    try:
        first = RunningReceiver(load_settings()).start()
        receivers.append(first)
        second = RunningReceiver(load_settings()).start()
        receivers.append(second)
        post(first.url, WEBHOOK_SECRET, event("user.created", clerk_user(user_id="user_r1")))
        first_count = scrape(first)["clerksync_deliveries_total"]
        assert sum(first_count.values()) == 1
        assert "clerksync_deliveries_total" not in scrape(second)
        assert REGISTRY.get_sample_value("clerksync_deliveries_total", {}) is None
    finally:
        REGISTRY.unregister(app_counter)


def test_no_metrics_serves_none(store: Store, receivers: list[Any]) -> None:
    running = RunningReceiver(load_settings(), metrics=False).start()
    receivers.append(running)
    answer = post(running.url, WEBHOOK_SECRET, event("user.created", clerk_user()))
    assert answer.status_code == 200
    assert httpx.get(running.base + "/metrics").status_code == 404
    assert running.receiver.metrics is None


def test_clerk_requests_are_counted_by_route_and_status_429_included(
    fake_clerk: FakeClerk, store: Store, receivers: list[Any]
) -> None:
    """The receiver's own gateway tells its metrics of every request: the write-back's
    PATCH is a route template (no user id), Clerk's 429 a status of its own."""
    user = fake_clerk.add_user(user_id="user_w1", email="w1@x.com")
    running = RunningReceiver(load_settings(), writeback_base_delay=0.05).start()
    receivers.append(running)
    fake_clerk.fail_next(1, status=429)  # the first PATCH (after GET /instance) is refused
    assert post(running.url, WEBHOOK_SECRET, event("user.created", user)).status_code == 200
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # until the worker has finished the user
        samples = scrape(running)
        if total(samples.get("clerksync_writebacks_total", {}), result="written"):
            break
        time.sleep(0.05)
    assert fake_clerk.metadata_writes, "the write-back never reached the fake Clerk"
    clerk = samples["clerksync_clerk_requests_total"]
    patch = "PATCH /users/{id}/metadata"
    assert total(clerk, route=patch, status="429") == 1
    assert total(clerk, route=patch, status="200") == 1
    assert total(samples["clerksync_writebacks_total"], result="written") == 1
    assert total(samples["clerksync_writebacks_total"], result="deferred") == 1
    # the backlog is the database's (read at most once a second): none left once written back
    while samples["clerksync_writeback_backlog"][()] and time.monotonic() < deadline:
        time.sleep(0.2)
        samples = scrape(running)
    assert samples["clerksync_writeback_backlog"][()] == 0
    assert samples["clerksync_writeback_oldest_due_age_seconds"][()] == 0


def test_the_backlog_counts_the_write_backs_that_wait(receiver: RunningReceiver) -> None:
    """No Clerk key: users are stored, their write-backs wait, and the backlog says how many
    and since when."""
    for n in range(3):
        user = clerk_user(user_id=f"user_b{n}", email=f"b{n}@x.com")
        assert post(receiver.url, WEBHOOK_SECRET, event("user.created", user)).status_code == 200
    samples = scrape(receiver)
    assert samples["clerksync_writeback_backlog"][()] == 3
    assert samples["clerksync_writeback_oldest_due_age_seconds"][()] >= 0
    assert "clerksync_writebacks_total" not in samples  # no workers without a key


def test_mounted_in_an_app_with_metrics_of_its_own_both_are_served(
    store: Store, webhook_secret: str
) -> None:
    """The app keeps its ``/metrics`` (prometheus-client's global registry, a metric of the
    same name even); the receiver mounted at ``/clerk`` serves its own at ``/clerk/metrics``."""
    from fastapi import FastAPI
    from fastapi.responses import Response
    from prometheus_client import REGISTRY, Counter, generate_latest
    from starlette.testclient import TestClient

    from clerksync.receiver import mount

    app = FastAPI()
    own = Counter("clerksync_deliveries", "The app's own, same name")

    @app.get("/metrics")
    def app_metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type="text/plain")

    mount(app, load_settings(), path="/clerk")
    try:
        own.inc(5)
        with TestClient(app) as client:
            payload = event("user.created", clerk_user(user_id="user_mnt"))
            body = json.dumps(payload).encode()
            answer = client.post(
                "/clerk/api/webhooks/clerk", content=body, headers=sign(WEBHOOK_SECRET, body)
            )
            assert answer.status_code == 200
            theirs = client.get("/metrics").text
            ours = client.get("/clerk/metrics").text
        assert "clerksync_deliveries_total 5.0" in theirs
        assert 'clerksync_deliveries_total{outcome="applied",type="user.created"} 1.0' in ours
    finally:
        REGISTRY.unregister(own)
