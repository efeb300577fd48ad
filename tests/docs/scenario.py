"""A docs page's project: its ``sh`` lines run as processes in a folder set up as the page
says (its schema, a database on the test server, the fake Clerk); see ``test_code_blocks``."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from tests.conftest import OUR_VARS, WEBHOOK_SECRET, free_port
from tests.docs.blocks import DOCS, blocks, sh_lines
from tests.support.fakeclerk import SECRET_KEY, FakeClerk

BIN = Path(sys.executable).parent
#: the schema each page's project is set up with (default nextjs)
SCHEMAS = {"journeys/fastapi-beanie.md": "fastapi", "journeys/other-model.md": "members.toml"}


def run_page(page: Path, folder: Path, mongo_url: str, clerk: FakeClerk) -> None:
    """Every ``sh`` line of ``page``, in order, each exiting 0."""
    scenario = Scenario(folder, page, mongo_url, clerk)
    try:
        for line in sh_lines(page):
            scenario.run(line)
    finally:
        scenario.stop()


class Scenario:
    """A project as the page sets it up, its commands run as processes."""

    def __init__(self, folder: Path, page: Path, mongo_url: str, clerk: FakeClerk) -> None:
        self.folder, self.clerk = folder, clerk
        (folder / "package.json").write_text("{}")
        schema = SCHEMAS.get(str(page.relative_to(DOCS)), "nextjs")
        if schema.endswith(".toml"):
            mapping = next(b for b in blocks(page) if b.lang == "toml")
            (folder / schema).write_text(mapping.text)
        self.database = f"docs_{uuid.uuid4().hex[:10]}"
        (folder / ".env.local").write_text(
            f"MONGODB_URL={mongo_url}\nMONGODB_DB={self.database}\n"
            f"WEBHOOK_SECRET={WEBHOOK_SECRET}\nCLERK_SECRET_KEY={SECRET_KEY}\n"
            f"CLERK_API_URL={clerk.url}\nCLERKSYNC_SCHEMA={schema}\n"
        )
        clean = {k: v for k, v in os.environ.items() if k not in OUR_VARS}
        self.env = {**clean, "PATH": f"{BIN}{os.pathsep}{clean.get('PATH', '')}"}
        self.servers: list[subprocess.Popen[str]] = []
        for n in range(2):  # the instance has users before the page starts
            clerk.add_user(user_id=f"user_before{n}", email=f"before{n}@example.com")

    def run(self, line: str) -> None:
        if shlex.split(line, comments=True)[:2] == ["clerksync", "serve"]:
            self.serve(line)
            return
        done = subprocess.run(
            ["bash", "-c", line],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (line, done.stdout[-2000:], done.stderr[-2000:])
        self.clerk_knows_every_user()

    def serve(self, line: str) -> None:
        port = free_port()
        server = subprocess.Popen(
            ["bash", "-c", f"exec {line} --port {port}"],
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.servers.append(server)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert server.poll() is None, (line, server.communicate()[1])
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{line}: did not start")

    def clerk_knows_every_user(self) -> None:
        """Clerk has every user a delivery named (``send`` makes them up; the real Clerk
        would have made them)."""
        from clerksync.mapping.users import public_view
        from clerksync.settings import load_settings
        from clerksync.store.connect import connect

        store = connect(load_settings(environ={}, cwd=self.folder))
        try:
            users = store.schema.users
            for doc in store.users.find({users.clerk_id: {"$regex": "^user_"}}):
                view = public_view(doc, users)
                if view["clerkId"] not in self.clerk.users:
                    self.clerk.add_user(
                        user_id=view["clerkId"],
                        email=view["email"],
                        first_name=view.get("firstName"),
                        last_name=view.get("lastName"),
                    )
        finally:
            store.close()

    def stop(self) -> None:
        for server in self.servers:
            server.terminate()
            server.communicate(timeout=30)
