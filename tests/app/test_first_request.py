"""The race the issue is about: a user signs up, the app's first requests come at once,
and Clerk's ``user.created`` is delivered at the same moment. One document, one app id,
one write-back to Clerk, and every request gets that document."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from clerksync.devtools.payloads import event
from clerksync.fastapi import CurrentUser
from clerksync.mapping import bookkeeping as bk
from clerksync.settings import load_settings
from clerksync.store.database import Store
from tests.conftest import WEBHOOK_SECRET
from tests.support import tokens
from tests.support.fakeclerk import FakeClerk
from tests.support.receiver import RunningApp, RunningReceiver, post


def settled(store: Store, clerk_id: str, timeout: float = 20) -> dict[str, Any]:
    """The user's document once no write-back is due or claimed (what the workers leave)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = store.users.find_one({"clerk_user_id": clerk_id})
        if doc and not bk.has(doc, bk.DUE) and not bk.has(doc, bk.LEASE_UNTIL):
            return doc
        time.sleep(0.05)
    raise AssertionError(f"the write-back of {clerk_id} did not settle")


@pytest.mark.parametrize("schema", ["fastapi"], indirect=True)
def test_fifty_first_requests_and_the_webhook_at_once_make_one_user(
    store: Store,
    fake_clerk: FakeClerk,
    webhook_secret: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLERK_JWT_KEY", tokens.public_pem())
    settings = load_settings()
    data = fake_clerk.add_user(user_id="user_rush", email="rush@example.com")
    dependency = CurrentUser(settings)
    app = FastAPI()

    @app.get("/me")
    async def me(user: dict = Depends(dependency)) -> dict:  # noqa: B008
        return {"id": str(user["_id"]), "user_id": user["user_id"]}

    receiver = RunningReceiver(settings, writeback_poll=0.2).start()
    api = RunningApp(app).start()
    try:
        start = threading.Barrier(51)
        answers: list[httpx.Response] = []
        token = tokens.bearer(tokens.session_token("user_rush"))

        def first_request() -> None:
            with httpx.Client(timeout=30) as client:
                start.wait()
                answers.append(client.get(f"{api.base}/me", headers=token))

        def delivery() -> None:
            start.wait()
            answers.append(post(receiver.url, WEBHOOK_SECRET, event("user.created", data)))

        threads = [threading.Thread(target=first_request) for _ in range(50)]
        threads.append(threading.Thread(target=delivery))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(a.status_code for a in answers) == [200] * 51, [a.text for a in answers]
        doc = settled(store, "user_rush")
        assert store.count() == 1
        served = [a.json() for a in answers if "id" in a.json()]
        assert len(served) == 50
        assert {(s["id"], s["user_id"]) for s in served} == {(str(doc["_id"]), doc["user_id"])}
        assert [c["seq"] for c in store.counters.find()] == [doc["user_id"]]  # one app id
        assert [user for user, _ in fake_clerk.metadata_writes] == ["user_rush"]
        assert fake_clerk.users["user_rush"]["public_metadata"]["userMongoId"] == str(doc["_id"])
    finally:
        api.stop()
        receiver.stop()
        dependency.close()
