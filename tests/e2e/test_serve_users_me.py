"""``clerksync serve --users-me`` as a process: a signup's first ``GET /api/users/me`` gets
the user's document before any webhook, and its write-back reaches Clerk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from clerksync.store.database import Store
from tests.conftest import WEBHOOK_SECRET, free_port
from tests.support import tokens
from tests.support.fakeclerk import SECRET_KEY, FakeClerk
from tests.support.receiver import wait_listening


def test_serve_users_me_answers_a_new_user_and_writes_it_back(
    store: Store, db_env: dict[str, str], fake_clerk: FakeClerk
) -> None:
    fake_clerk.add_user(user_id="user_first", email="first@example.com")
    port = free_port()
    env = {
        **os.environ,
        **db_env,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CLERK_SECRET_KEY": SECRET_KEY,
        "CLERK_API_URL": fake_clerk.url,
        "CLERK_AUTHORIZED_PARTIES": tokens.ORIGIN,
    }  # no CLERK_JWT_KEY: the keys come from the fake Clerk's JWKS
    proc = subprocess.Popen(
        [sys.executable, "-m", "clerksync", "serve", "--users-me", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_listening(proc, port)
        token = tokens.bearer(tokens.session_token("user_first"))
        answer = httpx.get(f"http://127.0.0.1:{port}/api/users/me", headers=token, timeout=30)
        assert answer.status_code == 200, answer.text
        doc = store.users.find_one({"clerkId": "user_first"})
        assert answer.json()["id"] == str(doc["_id"])
        deadline = time.monotonic() + 30
        while not fake_clerk.metadata_writes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake_clerk.metadata_writes == [
            ("user_first", {"userMongoId": str(doc["_id"]), "isAdmin": False})
        ]
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert b"/api/users/me" in out + err  # announced
