"""What the benchmarks share: free ports, waiting for a listener, a test database server,
the teardown of a run's processes and scratch directory, and latency percentiles."""

from __future__ import annotations

import math
import shutil
import socket
import statistics
import subprocess
import sys
import time
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port}")


def start_database(storage: str) -> tuple[subprocess.Popen[bytes], str]:
    """A SecantusDB server (secantusd-py) in its own process; returns it and its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "secantus",
            "--port",
            str(port),
            "--storage-path",
            storage,
            "--log-level",
            "ERROR",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return proc, f"mongodb://127.0.0.1:{port}/?directConnection=true"


def stop(procs: list[subprocess.Popen[Any]]) -> None:
    """End a run's processes, newest first (the receiver before the database it writes to).
    One that ignores SIGTERM for 10 s (or is stopped: a paused database) is killed."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def teardown(procs: list[subprocess.Popen[Any]], tmp: str) -> None:
    """A run's ``finally``: its processes ended, its scratch directory removed."""
    try:
        stop(procs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def latency_ms(seconds: list[float]) -> tuple[float, float]:
    """(p50, p99) in ms of latencies in seconds; NaN for none. The p99 is the sample at
    rank 0.99 n (of 100 samples, the 99th), the same in every bench."""
    if not seconds:
        return math.nan, math.nan
    ordered = sorted(seconds)
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
    return statistics.median(ordered) * 1000, p99 * 1000
