"""The embedded default store: a SecantusDB server (MongoDB wire protocol) in ./.clerksync/.

WiredTiger locks its directory, so two processes cannot each open it. Instead
the first clerksync command that needs the store starts one small daemon
(``python -m clerksync.embedded DIR``) and records its port in
``DIR/embedded.json``; every later process, ``serve`` or ``users list``,
connects to that daemon over loopback. The daemon exits on its own after
``IDLE_SECONDS`` without a client, so nothing lingers for long.

SecantusDB is GPL-2.0-only and an optional extra (``clerksync[embedded]``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from clerksync.errors import ConfigError, StoreUnavailable

IDLE_SECONDS = float(os.environ.get("CLERKSYNC_EMBEDDED_IDLE_SECONDS", "900"))
STATE_FILE = "embedded.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def running_server(state_dir: Path) -> dict[str, int] | None:
    """The daemon recorded in ``state_dir``, if it is alive and listening."""
    try:
        info = json.loads((state_dir / STATE_FILE).read_text())
        pid, port = int(info["pid"]), int(info["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if _alive(pid) and _answers(port):
        return {"pid": pid, "port": port}
    return None


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Serialise daemon start-up between processes (two commands started at once)."""
    import fcntl

    with open(state_dir / "embedded.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_server(
    state_dir: Path, *, announce: Callable[[str], None] | None = None, timeout: float = 20.0
) -> str:
    """Return a URI for the embedded store, starting its daemon if none runs."""
    try:
        import secantus  # noqa: F401
    except ImportError:
        raise ConfigError(
            "MONGODB_URL is not set and the embedded store is not installed: "
            "set MONGODB_URL, or `pip install 'clerksync[embedded]'`."
        ) from None
    state_dir.mkdir(parents=True, exist_ok=True)
    with _locked(state_dir):
        info = running_server(state_dir)
        started = False
        if info is None:
            info = _start_daemon(state_dir, timeout)
            started = True
    if announce is not None:
        verb = "started" if started else "using"
        announce(
            f"MONGODB_URL is unset: {verb} the embedded store in {state_dir}/ "
            f"(127.0.0.1:{info['port']}, pid {info['pid']})"
        )
    return f"mongodb://127.0.0.1:{info['port']}/?directConnection=true"


def _start_daemon(state_dir: Path, timeout: float) -> dict[str, int]:
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    with open(state_dir / "embedded.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clerksync.embedded", str(state_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # outlives the command that started it, ignores its Ctrl-C
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = running_server(state_dir)
        if info is not None:
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
    info = running_server(state_dir)
    if info is None:
        return False
    os.kill(info["pid"], signal.SIGTERM)
    for _ in range(100):
        if not _alive(info["pid"]):
            break
        time.sleep(0.05)
    return True


def run_daemon(state_dir: Path) -> None:
    """Serve ``state_dir/db`` until SIGTERM or ``IDLE_SECONDS`` with no client."""
    from secantus import SecantusDBServer

    server = SecantusDBServer(
        host="127.0.0.1", port=0, storage_path=str(state_dir / "db"), enable_test_commands=False
    )
    server.start()
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    tmp = state_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "port": server.port}))
    tmp.replace(state_dir / STATE_FILE)
    idle_since = time.monotonic()
    try:
        while not stopping:
            time.sleep(0.5)
            if len(server.connections):
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > IDLE_SECONDS:
                break
    finally:
        with contextlib.suppress(OSError):
            info = json.loads((state_dir / STATE_FILE).read_text())
            if info.get("pid") == os.getpid():
                (state_dir / STATE_FILE).unlink()
        server.stop()


if __name__ == "__main__":
    run_daemon(Path(sys.argv[1]))
