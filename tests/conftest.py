"""Shared fixtures: a real MongoDB-wire server, the fake Clerk, svix signing, a clean env.

``CLERKSYNC_TEST_MONGODB_URL`` points every test at a real mongod instead of
the SecantusDB server each pytest process starts in a process of its own. Each
test gets its own database.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.testing
from typer.testing import CliRunner

from clerksync.mapping.files import load_schema
from clerksync.mapping.schema import Schema
from clerksync.settings import KNOWN_NAMES, load_settings
from clerksync.store.connect import connect
from clerksync.store.database import Store
from tests.support.fakeclerk import SECRET_KEY, FakeClerk

EXTERNAL_MONGO = os.environ.get("CLERKSYNC_TEST_MONGODB_URL")
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

#: every variable clerksync reads (aliases included), plus the suite's own
OUR_VARS = (*KNOWN_NAMES, "CLERKSYNC_TEST_MONGODB_URL")

#: CLERKSYNC_SCHEMA values the schema-parametrized suites run under
SCHEMA_FILE = Path(__file__).parent / "support" / "custom_schema.toml"
SCHEMAS = {"nextjs": "nextjs", "fastapi": "fastapi", "custom": str(SCHEMA_FILE)}
ALL_SCHEMAS = pytest.mark.parametrize("schema", list(SCHEMAS), indirect=True)


#: below this, no port is handed out by bind(port 0) or to an outgoing connection
EPHEMERAL_LOW = 32768
with contextlib.suppress(OSError, ValueError):
    EPHEMERAL_LOW = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on now, for a server a test starts (and may stop and
    start again) on a port of its choosing.

    Drawn at random from below the kernel's ephemeral range: a port taken with bind(0) is
    in that range, and so is the local port of every outgoing connection, so there another
    test, another xdist worker or any client could take it between the pick and the bind,
    or while the server is stopped.
    """
    if EPHEMERAL_LOW > 11_000:
        for _ in range(200):
            port = random.randrange(10_000, EPHEMERAL_LOW)
            if port in _handed_out:
                continue
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop_in_process_server(server: Any) -> None:
    """Stop a ``SecantusDBServer`` a test runs in its own process: at once, its port free.

    ``stop()`` closes the listening socket, which does not wake the thread blocked in
    ``accept()`` on it: ``stop()`` then waits 2 s for that thread, and the socket listens
    on (a restart on its port fails) until some client happens to connect. ``shutdown()``
    wakes it.
    """
    listening = getattr(server, "_socket", None)
    if listening is not None:
        with contextlib.suppress(OSError):
            listening.shutdown(socket.SHUT_RDWR)
    server.stop()


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject's addopts): two workers per core, as most tests wait on
    sockets, subprocesses and timers rather than compute; ``PYTEST_XDIST_AUTO_NUM_WORKERS``
    still sets the number."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    return 2 * len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 4


@pytest.fixture(scope="session", autouse=True)
def imported_in_the_main_thread() -> None:
    """Import now, in the main thread, what test threads would otherwise import first.

    On Python 3.11 a first import in a thread can fail with a KeyError in
    ``importlib._bootstrap`` (python/cpython#87712, fixed in 3.12 only); it was seen, once
    in about ten parallel runs, in a receiver's uvicorn thread importing its event loop.
    Receiver threads import uvicorn's loop, protocol and lifespan modules and svix when
    they start, and the Clerk SDK loads its models lazily on the threads that parse its
    answers: all of that is imported here before any test starts a thread.
    """
    import linecache  # noqa: F401  (warnings from finalizers format with these)
    import tracemalloc  # noqa: F401

    import clerk_backend_api.models
    import clerk_backend_api.utils.unmarshal_json_response  # noqa: F401

    from clerksync.clerk.webhooks import svix_webhooks
    from clerksync.receiver.http import server_config

    svix_webhooks()  # the receivers' own load of it

    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    config = server_config(app)  # the receiver's settings: its protocol, lifespan and loop
    config.load()
    loop_factory = getattr(config, "get_loop_factory", None)  # uvicorn >= 0.36
    if loop_factory is not None:
        loop_factory()
    for name in dir(clerk_backend_api.models):
        getattr(clerk_backend_api.models, name)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Keep the developer's env and .env files out: clear our variables, work in a tmp dir."""
    for name in OUR_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The wire server this pytest process (each xdist worker) starts in a process of its own
    (``tests/support/wireserver.py``), or ``CLERKSYNC_TEST_MONGODB_URL``'s server."""
    if EXTERNAL_MONGO:
        yield EXTERNAL_MONGO
        return
    from tests.support.wireserver import WireServer

    server = WireServer(tmp_path_factory.mktemp("mongo"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def db_env(monkeypatch: pytest.MonkeyPatch, mongo_url: str) -> dict[str, str]:
    """Point clerksync at a fresh database on the test server, through the environment."""
    env = {
        "MONGODB_URL": mongo_url,
        "MONGODB_DB": f"t_{uuid.uuid4().hex[:12]}",
        "CLERKSYNC_MONGO_TIMEOUT_MS": "2000",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def schema(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Schema:
    """The app's schema, through ``CLERKSYNC_SCHEMA``: nextjs unless a test is parametrized
    with ``ALL_SCHEMAS`` (nextjs, fastapi and the custom mapping file)."""
    value = SCHEMAS[getattr(request, "param", "nextjs")]
    monkeypatch.setenv("CLERKSYNC_SCHEMA", value)
    return load_schema(value)


@pytest.fixture
def store(db_env: dict[str, str], schema: Schema) -> Iterator[Store]:
    user_store = connect(load_settings())
    user_store.ensure_indexes()
    try:
        yield user_store
    finally:
        user_store.client.drop_database(user_store.name)
        user_store.close()


@pytest.fixture
def watched(store: Store) -> Iterator[tuple[Store, Any]]:
    """The test database on a client of its own whose commands are recorded
    (``tests.support.commands.Commands``)."""
    from pymongo import MongoClient

    from tests.support.commands import Commands

    listener = Commands()
    url = load_settings().mongodb_url
    client: MongoClient[Any] = MongoClient(url, tz_aware=True, event_listeners=[listener])
    try:
        yield Store(client, store.name, store.schema), listener
    finally:
        client.close()


@pytest.fixture
def fail_points(store: Store) -> Iterator[Any]:
    """``configure(**failCommand)``: the server's one ``failCommand`` fail point, switched off
    after the test. The fail point is server-wide: on a server the xdist workers share
    (``CLERKSYNC_TEST_MONGODB_URL``) the tests that set it take turns (a file lock), so one
    never replaces or clears another's. A server without test commands skips the test."""
    import fcntl
    import tempfile

    from pymongo.errors import OperationFailure

    admin = store.client.admin
    lock = open(Path(tempfile.gettempdir()) / "clerksync-test-failpoint.lock", "w")  # noqa: SIM115
    if EXTERNAL_MONGO:
        fcntl.flock(lock, fcntl.LOCK_EX)

    def configure(mode: Any, data: dict[str, Any]) -> None:
        try:
            admin.command("configureFailPoint", "failCommand", mode=mode, data=data)
        except OperationFailure as exc:  # a mongod without enableTestCommands
            pytest.skip(f"the server has no failCommand fail point: {exc}")

    try:
        yield configure
    finally:
        with contextlib.suppress(OperationFailure):
            admin.command("configureFailPoint", "failCommand", mode="off")
        lock.close()  # and its lock with it


@pytest.fixture
def ensurer(store: Store, fake_clerk: FakeClerk) -> Iterator[Any]:
    """``ensure_user``'s ``Ensurer`` as the settings build it: the test database, the fake
    Clerk."""
    from clerksync.app.ensure import Ensurer

    built = Ensurer.from_settings(load_settings())
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def fake_clerk(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClerk]:
    fake = FakeClerk()
    fake.start()
    monkeypatch.setenv("CLERK_API_URL", fake.url)
    monkeypatch.setenv("CLERK_SECRET_KEY", SECRET_KEY)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def webhook_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("WEBHOOK_SECRET", WEBHOOK_SECRET)
    return WEBHOOK_SECRET


@pytest.fixture
def receiver(store: Store, webhook_secret: str) -> Iterator[Any]:
    """The real receiver app on uvicorn over loopback HTTP, on the test database."""
    from tests.support.receiver import RunningReceiver

    running = RunningReceiver(load_settings()).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def receivers(store: Store, webhook_secret: str) -> Iterator[list[Any]]:
    """Receivers a test starts (``RunningReceiver``s it appends), all stopped at its end."""
    started: list[Any] = []
    yield started
    for running in started:
        running.stop()


def _built_once(get_command: Any) -> Any:
    """typer's ``get_command``, remembered per app: typer's ``CliRunner`` builds the click
    command again (about 11 ms of CPU) for every invocation, where a run of ``clerksync``
    builds it once. Click commands keep nothing between invocations. (This replaces
    ``typer.testing._get_command``, typer's private name: should it go, the suite fails.)"""
    built: dict[Any, Any] = {}

    def get(app: Any) -> Any:
        if app not in built:
            built[app] = get_command(app)
        return built[app]

    return get


typer.testing._get_command = _built_once(typer.testing._get_command)


class Cli:
    """Runs the real Typer app in-process; stdout and stderr kept apart."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Any:
        from clerksync.cli import app

        return self.runner.invoke(app, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def cli() -> Cli:
    return Cli()


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something already listens on (for commands that must fail to bind it)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])
