"""What clerksync opens it closes: a receiver mounted as the docs show, the CLI's store,
and the embedded store's idle time read with the other settings."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from clerksync.devtools.payloads import clerk_user, event
from clerksync.store.database import Store
from tests.conftest import WEBHOOK_SECRET

RECEIVER_PAGE = Path(__file__).resolve().parents[2] / "docs" / "receiver.md"


def open_clients() -> int:
    """MongoClients open in this process: each runs a monitor thread per server, and pymongo
    names them (a client closed has none left). Counted by thread, not by registering a
    monitoring listener: one registered for the process slows every later client's close."""
    return sum(1 for t in threading.enumerate() if t.name == "pymongo_kill_cursors_thread")


def mount_example() -> str:
    text = RECEIVER_PAGE.read_text()
    section = text.split("Mount it in your own FastAPI or Starlette app:", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)  # type: ignore[union-attr]


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def settled(count: Any, at_most: int, seconds: float = 10.0) -> int:
    """``count()`` once it is at most ``at_most``, or when ``seconds`` have passed (threads
    a stop asked to end take a moment to go)."""
    deadline = time.monotonic() + seconds
    while (now := count()) > at_most and time.monotonic() < deadline:
        time.sleep(0.05)
    return int(now)


def test_twenty_apps_mounting_the_receiver_as_the_readme_shows_leave_nothing_behind(
    db_env: dict[str, str], store: Store, webhook_secret: str
) -> None:
    code = mount_example()

    def one_app(n: int) -> None:
        scope: dict[str, Any] = {}
        exec(code, scope)  # the docs' example, as written
        with TestClient(scope["app"]) as client:
            body = json.dumps(event("user.created", clerk_user(user_id=f"user_mount{n}")))
            from clerksync.clerk.webhooks import sign

            headers = sign(WEBHOOK_SECRET, body.encode())
            answer = client.post("/api/webhooks/clerk", content=body, headers=headers)
            assert answer.status_code == 200, answer.text

    one_app(0)  # the first one imports and warms up what any app would
    threads, files, clients = threading.active_count(), open_files(), open_clients()
    for n in range(1, 21):
        one_app(n)
    assert settled(open_clients, clients) <= clients
    assert settled(threading.active_count, threads) <= threads
    assert settled(open_files, files) <= files
    assert store.users.count_documents({"clerkId": {"$regex": "^user_mount"}}) == 21


def test_a_command_closes_the_database_client_it_opened(cli: Any, db_env: dict[str, str]) -> None:
    cli("users", "list")  # warm-up: the first run imports what every run would
    before = open_clients()
    for _ in range(5):
        assert cli("users", "list", "--json").exit_code == 0
    assert settled(open_clients, before) <= before


def test_the_embedded_store_idle_time_is_read_from_env_local(cli: Any, tmp_path: Path) -> None:
    from clerksync.store.embedded import running_daemon

    (tmp_path / ".env.local").write_text("CLERKSYNC_EMBEDDED_IDLE_SECONDS=1\n")
    assert cli("users", "list").exit_code == 0  # starts the embedded store's daemon
    state = tmp_path / ".clerksync"
    deadline = time.monotonic() + 30
    while running_daemon(state) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running_daemon(state) is None, "the daemon kept the default 15 minutes"
