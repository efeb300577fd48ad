"""The embedded default store: a SecantusDB server (MongoDB wire protocol) in ./.clerksync/.

WiredTiger locks its directory, so two processes cannot each open it. Instead
the first clerksync command that needs the store starts one small daemon
(``python -m clerksync.embedded DIR``) and records its port in
``DIR/embedded.json``; every later process, ``serve`` or ``users list``,
connects to that daemon over loopback. The daemon exits on its own after
``CLERKSYNC_EMBEDDED_IDLE_SECONDS`` (a setting like the others: the process env,
``.env.local``, ``.env``) without a client, so nothing lingers for long.

Only its owner can reach it: the daemon requires SCRAM-SHA-256 authentication
(SecantusDB has no unix sockets, so a loopback port is guarded by credentials),
with a user and a random password made at each start and kept, with the port,
in ``embedded.json``. The state folder is 0700 and every file in it 0600 (the
daemon runs under umask 077 and tightens files an older version left open), so
another local account can neither connect nor read the data files.

SecantusDB is GPL-2.0-only and an optional extra (``clerksync[embedded]``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from clerksync.errors import ConfigError, StoreUnavailable
from clerksync.statedir import pid_alive, private_dir, private_open, tighten, write_private_json

IDLE_SECONDS = 900.0  # the default; settings pass CLERKSYNC_EMBEDDED_IDLE_SECONDS
STATE_FILE = "embedded.json"
USER = "clerksync"


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def running_daemon(state_dir: Path) -> dict[str, Any] | None:
    """The daemon recorded in ``state_dir``, if it is alive and listening: pid, port and,
    from a daemon that requires them, its credentials (``password``)."""
    try:
        info = json.loads((state_dir / STATE_FILE).read_text())
        pid, port = int(info["pid"]), int(info["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid_alive(pid) and _answers(port):
        return {"pid": pid, "port": port, "password": info.get("password")}
    return None


def server_uri(info: dict[str, Any]) -> str:
    return (
        f"mongodb://{USER}:{quote_plus(str(info['password']))}@127.0.0.1:{info['port']}/"
        "?authSource=admin&authMechanism=SCRAM-SHA-256&directConnection=true"
    )


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Serialise daemon start-up between processes (two commands started at once)."""
    import fcntl

    with os.fdopen(private_open(state_dir / "embedded.lock", os.O_WRONLY), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_server(
    state_dir: Path,
    *,
    announce: Callable[[str], None] | None = None,
    timeout: float = 20.0,
    idle_seconds: float = IDLE_SECONDS,
) -> str:
    """Return a URI for the embedded store, starting its daemon if none runs."""
    try:
        import secantus  # noqa: F401
    except ImportError:
        raise ConfigError(
            "MONGODB_URL is not set and the embedded store is not installed: "
            "set MONGODB_URL, or `pip install 'clerksync[embedded]'`."
        ) from None
    private_dir(state_dir)
    with _locked(state_dir):
        info = running_daemon(state_dir)
        if info is not None and not info.get("password"):
            stop_server(state_dir)  # a daemon of an older version, open to every local user
            info = None
        started = False
        if info is None:
            info = _start_daemon(state_dir, timeout, idle_seconds)
            started = True
    if announce is not None:
        verb = "started" if started else "using"
        announce(
            f"MONGODB_URL is unset: {verb} the embedded store in {state_dir}/ "
            f"(127.0.0.1:{info['port']}, pid {info['pid']})"
        )
    return server_uri(info)


def _start_daemon(state_dir: Path, timeout: float, idle_seconds: float) -> dict[str, Any]:
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    log_fd = private_open(state_dir / "embedded.log", os.O_WRONLY | os.O_APPEND)
    with os.fdopen(log_fd, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clerksync.store.embedded", str(state_dir), str(idle_seconds)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # outlives the command that started it, ignores its Ctrl-C
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = running_daemon(state_dir)
        if info is not None and info.get("password"):
            return info
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    raise StoreUnavailable(
        f"the embedded store did not start; see {state_dir / 'embedded.log'} "
        "(or set MONGODB_URL to use your own MongoDB)"
    )


def stop_server(state_dir: Path) -> bool:
    """Stop the daemon for ``state_dir``; True if one was running."""
    info = running_daemon(state_dir)
    if info is None:
        return False
    os.kill(info["pid"], signal.SIGTERM)
    for _ in range(100):
        if not pid_alive(info["pid"]):
            break
        time.sleep(0.05)
    return True


def run_daemon(state_dir: Path, idle_seconds: float = IDLE_SECONDS) -> None:
    """Serve ``state_dir/db`` to its owner until SIGTERM or ``idle_seconds`` with no client."""
    from secantus import SecantusDBServer

    os.umask(0o077)  # WiredTiger's files, the log, the state file: the owner's only
    tighten(state_dir)
    server = SecantusDBServer(
        host="127.0.0.1",
        port=0,
        storage_path=str(state_dir / "db"),
        enable_test_commands=False,
        require_auth=True,
    )
    password = _provision(server)
    server.start()
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    write_private_json(
        state_dir / STATE_FILE, {"pid": os.getpid(), "port": server.port, "password": password}
    )
    idle_since = time.monotonic()
    try:
        while not stopping:
            time.sleep(0.5)
            if len(server.connections):
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > idle_seconds:
                break
    finally:
        with contextlib.suppress(OSError):
            info = json.loads((state_dir / STATE_FILE).read_text())
            if info.get("pid") == os.getpid():
                (state_dir / STATE_FILE).unlink()
        # SecantusDB's stop() closes its listening socket, which does not wake the thread
        # blocked in accept(): it waits 2 s for it. shutdown() wakes it, so a stop is at once.
        listening = getattr(server, "_socket", None)
        if listening is not None:
            with contextlib.suppress(OSError):
                listening.shutdown(socket.SHUT_RDWR)
        server.stop()


def _provision(server: Any) -> str:
    """A fresh password for the one user, written straight into the server's user table
    before it listens: no moment when the port answers without credentials."""
    from secantus.auth import SCRAM_SHA_256, derive_credentials

    password = secrets.token_urlsafe(24)
    credentials = derive_credentials(password, mechanism=SCRAM_SHA_256, username=USER)
    server.storage.add_user(
        "admin",
        USER,
        {
            "_id": f"admin.{USER}",
            "user": USER,
            "db": "admin",
            "credentials": credentials.to_doc(),
            "roles": [{"role": "root", "db": "admin"}],
            "mechanisms": [SCRAM_SHA_256],
        },
        replace=True,
    )
    return password


if __name__ == "__main__":
    run_daemon(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else IDLE_SECONDS)
