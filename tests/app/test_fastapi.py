"""``clerksync.fastapi.current_user``: a FastAPI route gets the caller's document, ensured,
for a real Clerk session token (RS256, verified by the SDK's ``authenticate_request``,
networkless with ``CLERK_JWT_KEY`` or through the fake Clerk's JWKS); anything else is a
401 that writes nothing, calls Clerk for no user, and logs nothing of the token."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from clerksync.app.auth import SessionAuth
from clerksync.app.ensure import Ensurer
from clerksync.fastapi import CurrentUser
from clerksync.kinds.user import USER
from clerksync.settings import load_settings
from clerksync.store.database import Store
from tests.support import tokens
from tests.support.fakeclerk import FakeClerk
from tests.support.writes import delete


def app_with(dependency: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/me")
    async def me(user: dict = Depends(dependency)) -> dict:  # noqa: B008  (FastAPI's idiom)
        return {"id": str(user["_id"]), "email": user.get("email")}

    return app


@pytest.fixture(params=["jwt key", "jwks"])
def client(
    request: pytest.FixtureRequest,
    store: Store,
    fake_clerk: FakeClerk,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[TestClient]:
    """A FastAPI app whose route depends on ``current_user``: tokens verified with
    ``CLERK_JWT_KEY``, or with the keys of the fake Clerk's ``GET /jwks``."""
    if request.param == "jwt key":
        monkeypatch.setenv("CLERK_JWT_KEY", tokens.public_pem())
    monkeypatch.setenv("CLERK_AUTHORIZED_PARTIES", f"{tokens.ORIGIN},https://app.example.com")
    dependency = CurrentUser(load_settings())
    try:
        with TestClient(app_with(dependency)) as test_client:
            yield test_client
    finally:
        dependency.close()


def test_a_new_user_gets_its_document_before_any_webhook(
    client: TestClient, store: Store, fake_clerk: FakeClerk
) -> None:
    fake_clerk.add_user(user_id="user_new", email="new@example.com")
    answer = client.get("/me", headers=tokens.bearer(tokens.session_token("user_new")))
    assert answer.status_code == 200, answer.text
    assert answer.json()["email"] == "new@example.com"
    assert answer.json()["id"] == str(store.users.find_one({"clerkId": "user_new"})["_id"])


def test_the_session_cookie_works_as_the_header_does(
    client: TestClient, fake_clerk: FakeClerk
) -> None:
    fake_clerk.add_user(user_id="user_cookie", email="c@example.com")
    client.cookies.set("__session", tokens.session_token("user_cookie"))
    answer = client.get("/me")
    assert answer.status_code == 200 and answer.json()["email"] == "c@example.com"


def bad_tokens(user_id: str) -> dict[str, dict[str, str]]:
    now = time.time()
    return {
        "missing": {},
        "expired": tokens.bearer(tokens.session_token(user_id, issued=now - 180, lifetime=60)),
        "not yet valid": tokens.bearer(tokens.session_token(user_id, not_before=now + 120)),
        "issued in the future": tokens.bearer(tokens.session_token(user_id, issued=now + 120)),
        "wrong key": tokens.bearer(tokens.session_token(user_id, key="another")),
        "wrong party": tokens.bearer(tokens.session_token(user_id, azp="https://evil.example")),
        "malformed": tokens.bearer("eyJhbGciOiJSUzI1NiJ9.not-json.sig"),
        "alg none": tokens.bearer(tokens.unsigned_token(user_id)),
        "machine token": tokens.bearer("ak_" + "x" * 40),
        "not a bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
    }


@pytest.mark.parametrize("case", list(bad_tokens("user_x")))
def test_a_bad_token_is_a_401_that_writes_nothing_and_logs_nothing_of_it(
    client: TestClient,
    store: Store,
    fake_clerk: FakeClerk,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    fake_clerk.add_user(user_id="user_x")
    headers = bad_tokens("user_x")[case]
    with caplog.at_level(logging.DEBUG):
        answer = client.get("/me", headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert store.count() == 0 and fake_clerk.counts["GET /users/{id}"] == 0
    token = headers.get("Authorization", "").removeprefix("Bearer ")
    logged = caplog.text + answer.text
    assert all(part not in logged for part in token.split(".") if len(part) > 16)


def test_a_deleted_user_gets_a_401_and_no_document(
    client: TestClient, store: Store, fake_clerk: FakeClerk
) -> None:
    fake_clerk.add_user(user_id="user_gone")
    token = tokens.bearer(tokens.session_token("user_gone"))
    assert client.get("/me", headers=token).status_code == 200
    delete(store, USER, "user_gone")  # its user.deleted; the token lives on for a minute
    answer = client.get("/me", headers=token)
    assert answer.status_code == 401 and "deleted" in answer.text
    assert store.count() == 0


def test_a_user_clerk_does_not_have_is_a_401(client: TestClient, store: Store) -> None:
    answer = client.get("/me", headers=tokens.bearer(tokens.session_token("user_ghost")))
    assert answer.status_code == 401 and store.count() == 0


def test_clerk_down_for_a_new_user_is_a_503_with_retry_after(
    client: TestClient, store: Store, fake_clerk: FakeClerk
) -> None:
    fake_clerk.add_user(user_id="user_wait")
    fake_clerk.fail_path("/users/user_wait", 502)
    answer = client.get("/me", headers=tokens.bearer(tokens.session_token("user_wait")))
    assert answer.status_code == 503 and answer.headers["retry-after"].isdigit()
    assert store.count() == 0


def test_keys_clerk_rotated_are_fetched_again_but_not_on_every_request(
    ensurer: Ensurer, fake_clerk: FakeClerk
) -> None:
    """Through the JWKS: kept after the first fetch; a token naming a key id not kept
    fetches them again (Clerk rotated its key), at most once per ``refresh_every``."""
    fake_clerk.add_user(user_id="user_r")
    now = [0.0]
    auth = SessionAuth(gateway=ensurer.gateway, refresh_every=60, clock=lambda: now[0])
    with TestClient(app_with(CurrentUser(ensurer=ensurer, auth=auth))) as client:

        def status(**options: Any) -> int:
            token = tokens.session_token("user_r", **options)
            return client.get("/me", headers=tokens.bearer(token)).status_code

        assert (status(), status()) == (200, 200)
        assert fake_clerk.counts["GET /jwks"] == 1  # kept
        fake_clerk.jwks = tokens.jwks("rotated", kid="ins_rotated")
        assert status(key="rotated", kid="ins_rotated") == 401  # fetched a moment ago
        assert fake_clerk.counts["GET /jwks"] == 1
        now[0] += 61
        assert status(key="rotated", kid="ins_rotated") == 200
        assert fake_clerk.counts["GET /jwks"] == 2
        assert (status(), status(kid="ins_made_up")) == (401, 401)  # the old key is gone
        assert fake_clerk.counts["GET /jwks"] == 2


def test_the_default_dependency_reads_the_settings(
    store: Store, fake_clerk: FakeClerk, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clerksync.fastapi import current_user

    monkeypatch.setenv("CLERK_JWT_KEY", tokens.public_pem().replace("\n", "\\n"))  # one line
    fake_clerk.add_user(user_id="user_default", email="d@example.com")
    try:
        with TestClient(app_with(current_user)) as client:
            answer = client.get("/me", headers=tokens.bearer(tokens.session_token("user_default")))
        assert answer.status_code == 200 and answer.json()["email"] == "d@example.com"
        assert fake_clerk.counts["GET /jwks"] == 0  # networkless
    finally:
        current_user.close()
