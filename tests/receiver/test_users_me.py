"""``serve --users-me``: ``GET /api/users/me`` answers the caller's document as ``users show
--json`` renders it, ensured (a signup's first request never meets "user not found"),
authenticated as the FastAPI dependency is; off unless asked; limited per user."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from clerksync.kinds.user import USER
from clerksync.receiver.users_me import PerUser
from clerksync.settings import load_settings
from clerksync.store.database import Store
from tests.app.test_fastapi import bad_tokens
from tests.app.test_first_request import settled
from tests.support import tokens
from tests.support.fakeclerk import FakeClerk
from tests.support.receiver import RunningReceiver
from tests.support.writes import delete


@pytest.fixture
def users_me(
    store: Store, fake_clerk: FakeClerk, webhook_secret: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningReceiver]:
    monkeypatch.setenv("CLERK_JWT_KEY", tokens.public_pem())
    monkeypatch.setenv("CLERK_AUTHORIZED_PARTIES", tokens.ORIGIN)
    running = RunningReceiver(
        load_settings(), users_me=PerUser(rate=0.001, burst=5), writeback_poll=0.2
    ).start()
    try:
        yield running
    finally:
        running.stop()


def me(running: RunningReceiver, user_id: str | None = None, **headers: str) -> httpx.Response:
    if user_id is not None:
        headers = {**tokens.bearer(tokens.session_token(user_id)), **headers}
    return httpx.get(f"{running.base}/api/users/me", headers=headers, timeout=30)


def test_off_unless_asked(receiver: RunningReceiver) -> None:
    assert me(receiver, "user_any").status_code == 404


@pytest.mark.parametrize("schema", ["fastapi"], indirect=True)
def test_a_new_user_is_ensured_and_shown_as_users_show_shows_it(
    users_me: RunningReceiver, store: Store, fake_clerk: FakeClerk, cli: Any
) -> None:
    fake_clerk.add_user(user_id="user_new", email="new@example.com", first_name="Nia")
    answer = me(users_me, "user_new")
    assert answer.status_code == 200, answer.text
    doc = store.users.find_one({"clerk_user_id": "user_new"})
    store.users.update_one({"_id": doc["_id"]}, {"$set": {"password_hash": "$2b$12$secret"}})
    shown = me(users_me, "user_new").json()
    assert shown == json.loads(cli("users", "show", "user_new", "--json").stdout)
    assert shown["id"] == str(doc["_id"]) and shown["email"] == "new@example.com"
    assert "secret" not in json.dumps(shown) and "password_hash" not in shown
    settled(store, "user_new")  # written back at once by the receiver's workers
    assert [user for user, _ in fake_clerk.metadata_writes] == ["user_new"]


@pytest.mark.parametrize("case", list(bad_tokens("user_x")))
def test_a_bad_token_is_a_401_that_writes_nothing_and_logs_nothing_of_it(
    users_me: RunningReceiver,
    store: Store,
    fake_clerk: FakeClerk,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    fake_clerk.add_user(user_id="user_x")
    headers = bad_tokens("user_x")[case]
    with caplog.at_level(logging.DEBUG):
        answer = httpx.get(f"{users_me.base}/api/users/me", headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert store.count() == 0 and fake_clerk.counts["GET /users/{id}"] == 0
    token = headers.get("Authorization", "").removeprefix("Bearer ")
    assert "request refused: 401" in caplog.text  # the refusal is logged, its token is not
    logged = caplog.text + answer.text
    assert all(part not in logged for part in token.split(".") if len(part) > 16)


def test_a_deleted_user_gets_a_401_and_no_document(
    users_me: RunningReceiver, store: Store, fake_clerk: FakeClerk
) -> None:
    fake_clerk.add_user(user_id="user_gone")
    assert me(users_me, "user_gone").status_code == 200
    delete(store, USER, "user_gone")
    answer = me(users_me, "user_gone")
    assert answer.status_code == 401 and "deleted" in answer.text and store.count() == 0


def test_each_user_is_limited_on_its_own(users_me: RunningReceiver, fake_clerk: FakeClerk) -> None:
    for user_id in ("user_a", "user_b"):
        fake_clerk.add_user(user_id=user_id, email=f"{user_id}@example.com")
    assert [me(users_me, "user_a").status_code for _ in range(5)] == [200] * 5
    refused = me(users_me, "user_a")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert me(users_me, "user_b").status_code == 200  # another user is not held back


def test_clerk_down_is_a_503(
    users_me: RunningReceiver, store: Store, fake_clerk: FakeClerk
) -> None:
    fake_clerk.add_user(user_id="user_wait")
    fake_clerk.fail_path("/users/user_wait", 503)
    answer = me(users_me, "user_wait")
    assert answer.status_code == 503 and answer.headers["retry-after"].isdigit()
    assert store.count() == 0
    assert me(users_me, "user_wait").status_code == 200
