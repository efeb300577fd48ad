"""The suite's MongoDB-wire server (SecantusDB) in a process of its own.

In the test process it would share that process's interpreter lock with the tests, the
receivers and the fake Clerk, and a busy test could hold up the server past a driver
timeout. So each pytest process (each xdist worker) starts one of these::

    python -m tests.support.wireserver STORAGE_DIR PORT_FILE

It serves on a loopback port the kernel picks, writes that port to ``PORT_FILE`` once it
listens, and stops when its standard input closes: when the test process stops it, and
also when that process dies however it dies (Ctrl-C, a crash, SIGKILL), so no server is
left behind. ``WireServer`` is the test process's side.

It is ``SecantusDBServer`` itself, not the ``secantusd-py`` launcher: the launcher would
read a ``secantusd.toml`` from the working or home folder, and turns test commands off.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class WireServer:
    """Start ``python -m tests.support.wireserver`` in ``folder``; wait until it answers a ping."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port_file = folder / "port"
        self.log_path = folder / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 60.0) -> str:
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError

        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.support.wireserver",
                    str(self.folder / "db"),
                    str(self.port_file),
                ],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Ctrl-C in a terminal reaches the test process, which stops the server
                # (or dies, which closes the server's stdin): not both at once.
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the wire server exited:\n{self.log()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the wire server did not answer in {timeout} s:\n{self.log()}"
                    )
                if self.port_file.exists():
                    port = int(self.port_file.read_text())
                    self.url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
                    with MongoClient(self.url, serverSelectionTimeoutMS=2000) as client:
                        try:
                            client.admin.command("ping")
                            return self.url
                        except PyMongoError:
                            pass
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Close its stdin (it exits), and kill it if it has not exited within ``timeout``."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"


def serve(storage: str, port_file: str) -> None:
    from secantus import SecantusDBServer

    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopping.set())

    def watch_stdin() -> None:
        with contextlib.suppress(OSError):
            while sys.stdin.buffer.read(4096):
                pass
        stopping.set()

    server = SecantusDBServer(port=0, storage_path=storage)
    server.start()
    threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    written = f"{port_file}.{os.getpid()}"
    Path(written).write_text(str(server.port))
    os.replace(written, port_file)  # whole, or not there
    while not stopping.wait(0.5):
        pass
    # Gone at once, storage and all: nothing reads this folder again, and
    # SecantusDBServer.stop() waits 2 s for an accept() that closing does not wake.
    os._exit(0)


if __name__ == "__main__":
    serve(*sys.argv[1:3])
