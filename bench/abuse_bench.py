"""Real-delivery latency while the receiver is abused, next to the quiet figure, same run.

Starts a SecantusDB server of its own and `clerksync serve` in
its own process, on loopback. Each phase sends the same stream of real,
svix-signed ``user.created`` deliveries (``-n`` of them, ``-c`` at a time, one
keep-alive connection per sender) and, apart from the quiet phase, runs one
abuse at the same time from another process, for as long as the real stream
lasts and never more than ``--max-seconds``:

- ``wrong-secret``: a flood of deliveries signed with another secret;
- ``8MB-header``: requests with an 8 MB ``svix-id``;
- ``1M-signatures``: requests with 1,000,000 ``v1,AAAA`` signatures;
- ``idle-sockets``: 500 connections that send nothing (and 100 that send half a
  request line), held open;
- ``big-bodies``: 64 at a time, bodies one byte short of 1 MiB with a fresh
  timestamp and a wrong signature (read in full before they fail);
- ``db-paused``: the database process stopped (SIGSTOP) for the phase: the
  figures are those of the 503 answers, and the failed records must reach the
  log once it resumes.

Prints per phase: real-delivery p50/p99 (ms) and the p99 ratio to quiet, the
abuse requests sent, the receiver's RSS and the bytes its log (stderr) and
its delivery-log collection grew by. Bounded: the abusers hold at most ~600
sockets, 64 bodies, and stop when the phase does.

    python bench/abuse_bench.py [-n 400] [-c 4] [--max-seconds 30]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import bson
from harness import free_port, latency_ms, start_database, teardown, wait_port
from pymongo import MongoClient

from clerksync.clerk.webhooks import new_secret, sign
from clerksync.devtools.payloads import clerk_user, event
from clerksync.store.database import DELIVERIES as COLLECTION

PATH = "/api/webhooks/clerk"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def raw(port: int, data: bytes, *, read: bool = True) -> None:
    """Send ``data`` on a fresh socket and read the answer; refused mid-send is fine."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(data)
            while read and sock.recv(65536):
                pass
    except OSError:
        pass


def head(headers: dict[str, str], length: int) -> bytes:
    lines = [f"POST {PATH} HTTP/1.1", "host: x", "connection: close", f"content-length: {length}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- abusers: each runs in its own process until ``stop`` is set, and counts what it sent ------


def wrong_secret(port: int, stop: Any, sent: Any) -> None:
    body = json.dumps(event("user.created", clerk_user())).encode()
    headers = sign("whsec_" + "QUJD" * 8, body)

    def one_connection() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not stop.is_set():
            try:
                conn.request("POST", PATH, body=body, headers=headers)
                conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            with sent.get_lock():
                sent.value += 1

    threads = [threading.Thread(target=one_connection) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def huge_header(value: str, name: str) -> Callable[[int, Any, Any], None]:
    def abuse(port: int, stop: Any, sent: Any) -> None:
        body = json.dumps(event("user.created", clerk_user())).encode()
        data = head({**sign(new_secret(), body), name: value}, len(body)) + body
        while not stop.is_set():
            raw(port, data)
            with sent.get_lock():
                sent.value += 1

    return abuse


def idle_sockets(port: int, stop: Any, sent: Any) -> None:
    held: list[socket.socket] = []
    while not stop.is_set():
        # Keep 600 open: the server closes them after its header deadline; reopen.
        held = [s for s in held if s.fileno() != -1]
        while len(held) < 600 and not stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                if len(held) % 6 == 0:
                    sock.sendall(f"POST {PATH} HTTP/1.1\r\nhost: x\r\n".encode())
                sock.setblocking(False)
                held.append(sock)
                with sent.get_lock():
                    sent.value += 1
            except OSError:
                break
        time.sleep(0.5)
        for sock in list(held):
            try:
                if sock.recv(1) == b"":
                    sock.close()
            except BlockingIOError:
                pass
            except OSError:
                sock.close()
    for sock in held:
        sock.close()


def big_bodies(port: int, stop: Any, sent: Any) -> None:
    body = b"x" * (1024 * 1024 - 1)

    def one() -> None:
        while not stop.is_set():
            # A fresh timestamp (it is no secret) gets past the header checks: the server
            # reads each body, within its large-body budget, before the signature fails.
            stamp = str(int(time.time()))
            headers = {"svix-id": "msg_big", "svix-timestamp": stamp, "svix-signature": "v1,x"}
            raw(port, head(headers, len(body)) + body)
            with sent.get_lock():
                sent.value += 1

    threads = [threading.Thread(target=one) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


ABUSES: dict[str, Callable[[int, Any, Any], None] | None] = {
    "quiet": None,
    "wrong-secret": wrong_secret,
    "8MB-header": huge_header("msg_" + "A" * 8 * 1024 * 1024, "svix-id"),
    "1M-signatures": huge_header(" ".join(["v1,AAAA"] * 1_000_000), "svix-signature"),
    "idle-sockets": idle_sockets,
    "big-bodies": big_bodies,
    "db-paused": None,  # SIGSTOP on the database process: answers are 503, measured as such
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=400, help="real deliveries per phase")
    parser.add_argument("-c", type=int, default=4, help="real deliveries at a time")
    parser.add_argument("--max-seconds", type=float, default=30)
    args = parser.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    tmp = tempfile.mkdtemp(prefix="clerksync-abuse-")
    try:
        db_proc, url = start_database(f"{tmp}/db")  # its own: the last phase pauses it
        procs.append(db_proc)
        db = f"abuse_{int(time.time())}"
        secret = new_secret()
        port = free_port()
        env = {**os.environ, "MONGODB_URL": url, "MONGODB_DB": db, "WEBHOOK_SECRET": secret}
        env.pop("CLERK_SECRET_KEY", None)
        log_path = f"{tmp}/serve.log"
        with open(log_path, "wb") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "clerksync", "serve", "--log-json", "--port", str(port)],
                    env=env,
                    cwd=tmp,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
        receiver = procs[-1]
        wait_port(port)
        deliveries: Any = MongoClient(url)[db][COLLECTION]
        local = threading.local()
        failures: dict[str, int] = {}  # status and error -> count, this phase
        failures_lock = threading.Lock()

        def deliver(item: tuple[bytes, dict[str, str]]) -> tuple[float, int]:
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            started = time.perf_counter()
            try:
                conn.request("POST", PATH, body=item[0], headers=item[1])
                response = conn.getresponse()
                answer = response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                local.conn = None
                status, answer = 0, b""
            elapsed = time.perf_counter() - started
            if status != 200:
                try:
                    why = f"{status} {json.loads(answer).get('error')}"
                except ValueError:
                    why = f"{status} {answer[:40]!r}" if status else "no answer"
                with failures_lock:
                    failures[why] = failures.get(why, 0) + 1
            return elapsed, status

        def log_bytes() -> tuple[int, int]:
            stored = sum(len(bson.encode(b)) for b in deliveries.find({}))
            return os.path.getsize(log_path), stored

        warm = [json.dumps(event("user.created", clerk_user())).encode() for _ in range(50)]
        with ThreadPoolExecutor(args.c) as pool:  # imports, connections, the first writes
            list(pool.map(deliver, [(b, sign(secret, b)) for b in warm]))
        quiet_p99 = None
        print(
            f"{args.n} real deliveries per phase, {args.c} at a time; the abuse runs alongside "
            "from another process (2 shared cores: noisy figures)"
        )
        print(
            f"{'phase':<15}{'p50 ms':>9}{'p99 ms':>9}{'p99/quiet':>10}{'failed':>8}"
            f"{'abuse reqs':>11}{'RSS MB':>8}{'log +B':>9}{'records +B':>11}"
        )
        for name, abuse in ABUSES.items():
            items = []
            for _ in range(args.n):
                body = json.dumps(event("user.created", clerk_user())).encode()
                items.append((body, sign(secret, body)))
            before_log, before_stored = log_bytes()
            stop = multiprocessing.Event()
            sent = multiprocessing.Value("i", 0)
            abuser = None
            if abuse is not None:
                abuser = multiprocessing.Process(target=abuse, args=(port, stop, sent))
                abuser.start()
                time.sleep(1.0)  # let the abuse build up
            failures.clear()
            deadline = time.monotonic() + args.max_seconds
            if name == "db-paused":
                os.kill(db_proc.pid, signal.SIGSTOP)
            answers: list[tuple[float, int]] = []
            with ThreadPoolExecutor(args.c) as pool:
                for start in range(0, len(items), args.c * 10):
                    answers += pool.map(deliver, items[start : start + args.c * 10])
                    if time.monotonic() > deadline:
                        break
            rss = rss_mb(receiver.pid)
            if name == "db-paused":
                os.kill(db_proc.pid, signal.SIGCONT)
                time.sleep(3)  # the log writes the failed records once the database is back
            stop.set()
            if abuser is not None:
                abuser.join(30)
                if abuser.is_alive():
                    abuser.terminate()
            time.sleep(0.5)  # the delivery log flushes every 0.2 s
            after_log, after_stored = log_bytes()
            # Paused database: every answer counts (503s are the point: how fast they come).
            ok = sorted(t for t, status in answers if status == 200 or name == "db-paused")
            failed = sum(status != 200 for _, status in answers)
            p50, p99 = latency_ms(ok)
            quiet_p99 = quiet_p99 or p99
            print(
                f"{name:<15}{p50:>9.1f}{p99:>9.1f}{p99 / quiet_p99:>10.2f}{failed:>8}"
                f"{sent.value:>11}{rss:>8.0f}{after_log - before_log:>9}"
                f"{after_stored - before_stored:>11}"
                + (
                    "  failed: " + ", ".join(f"{k} ×{v}" for k, v in failures.items())
                    if failures
                    else ""
                )
            )
    finally:
        teardown(procs, tmp)


if __name__ == "__main__":
    main()
