"""The two journeys of the docs, as a newcomer follows them: the guide's Next.js app (its
Mongoose model, from npm) and the report's FastAPI app (its Beanie model, from PyPI) on the
database a real ``clerksync serve`` fills from signed deliveries (``clerksync send``), the app
started before clerksync and again after. Every document clerksync wrote validates against
the app's model, and the app starts on the indexes both made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import OUR_VARS, WEBHOOK_SECRET, free_port
from tests.support.apps import BeanieApp, MongooseApp

CLI = [sys.executable, "-m", "clerksync"]


class Project:
    """An app's folder with a ``.env.local`` as the journey pages write it, and clerksync
    run in it as its own processes."""

    def __init__(self, folder: Path, url: str, schema: str) -> None:
        self.folder = folder
        self.database = f"j_{uuid.uuid4().hex[:10]}"
        self.url = url
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".env.local").write_text(
            f"MONGODB_URL={url}\nMONGODB_DB={self.database}\nWEBHOOK_SECRET={WEBHOOK_SECRET}\n"
            f"CLERKSYNC_SCHEMA={schema}\n"
        )
        clean = {k: v for k, v in os.environ.items() if k not in OUR_VARS}
        self.env = {**clean, "COLUMNS": "100"}
        self.port = free_port()
        self.serving: subprocess.Popen[str] | None = None

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=60
        )

    def serve(self) -> None:
        self.serving = subprocess.Popen(
            [*CLI, "serve", "--port", str(self.port)],
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.serving.poll() is None, self.serving.communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("clerksync serve did not start")

    def stop(self) -> None:
        if self.serving is not None and self.serving.poll() is None:
            self.serving.terminate()
            self.serving.communicate(timeout=30)

    def send(self, *args: str) -> dict:
        sent = self.run("send", *args, "--json")
        assert sent.returncode == 0, sent.stdout + sent.stderr
        return json.loads(sent.stdout)


@pytest.fixture
def project(tmp_path: Path, mongo_url: str) -> Iterator[Project]:
    made: list[Project] = []

    def make(schema: str) -> Project:
        made.append(Project(tmp_path / "app", mongo_url, schema))
        return made[-1]

    yield make  # type: ignore[misc]
    for p in made:
        p.stop()


def deliveries(project: Project) -> list[dict]:
    """The journey page's deliveries: a full signup, a phone-only one (no email, no
    username), one without a username, an update of the first, and a promotion."""
    project.serve()
    first = project.send("user.created", "--email", "grace@example.com", "--first-name", "Grace")
    project.send("user.updated", "--last-name", "Hopper", "--username", "grace")
    project.send("user.created", "--first-name", "Phone", "--last-name", "Only")
    project.send("user.created", "--email", "ada@example.com")
    promoted = project.run("promote", "grace@example.com")
    assert promoted.returncode == 0, promoted.stderr
    listed = project.run("users", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return [first, *json.loads(listed.stdout)]


def test_the_guides_nextjs_app_on_what_clerksync_writes(project, tmp_path: Path) -> None:
    p = project("nextjs")
    app = MongooseApp(tmp_path / "app", p.url, p.database)
    assert app.start().users == 0  # the app first: its model builds its indexes
    first, *users = deliveries(p)
    assert first["status"] == 200 and first["userId"].startswith("user_")
    assert len(users) == 3
    started = app.start()  # and again: autoIndex meets the indexes as they are now
    assert started.users == 3 and started.invalid == []
    assert {"clerkId_1", "email_1", "username_1", "clerksync_dueAt"} <= set(started.indexes)
    doctor = p.run("doctor", "--json")
    failed = [c for c in json.loads(doctor.stdout)["checks"] if c["status"] == "fail"]
    assert failed == [] and doctor.returncode == 0


@pytest.mark.parametrize("first", ["app", "clerksync"])
def test_the_reports_fastapi_app_on_what_clerksync_writes(
    project, first: str, tmp_path: Path
) -> None:
    p = project("fastapi")
    app = BeanieApp(p.url, p.database)
    if first == "app":
        assert app.start().users == 0
    _, *users = deliveries(p)
    assert {u["email"] for u in users} == {"grace@example.com", "ada@example.com", None}
    started = app.start()
    assert started.users == 3 and started.invalid == []
    assert {"clerk_user_id_1", "email_1", "username_1", "user_id_1"} <= set(started.indexes)
    doctor = p.run("doctor", "--json")
    failed = [c for c in json.loads(doctor.stdout)["checks"] if c["status"] == "fail"]
    assert failed == [] and doctor.returncode == 0
