"""Receiver throughput vs raw pymongo upserts, against the same database in the same run.

Starts a SecantusDB server (``secantusd-py``) unless MONGODB_URL is set, then
`clerksync serve` in its own process, sends N svix-signed ``user.created``
deliveries over loopback at concurrency C, and prints events/s, p50 and p99
latency. The baseline is the raw pymongo single-document upsert rate (same
write concern, same concurrency, same server). Goal: ratio >= 0.8.

    python bench/serve_bench.py [-n 2000] [-c 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from pymongo import MongoClient, WriteConcern

from clerksync.payloads import clerk_user, event
from clerksync.webhooks import new_secret, sign


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port}")


def baseline(url: str, db: str, n: int, c: int) -> float:
    coll = MongoClient(url)[db].get_collection(
        "baseline", write_concern=WriteConcern(w="majority", j=True)
    )
    coll.create_index("clerkId", unique=True)
    docs = [{"clerkId": f"user_base{i}", "email": f"b{i}@x.com"} for i in range(n)]

    def upsert(doc: dict) -> None:
        coll.update_one({"clerkId": doc["clerkId"]}, {"$set": doc}, upsert=True)

    started = time.perf_counter()
    with ThreadPoolExecutor(c) as pool:
        list(pool.map(upsert, docs))
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("-c", type=int, default=8)
    args = parser.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    tmp = tempfile.mkdtemp(prefix="clerksync-bench-")
    try:
        url = os.environ.get("MONGODB_URL")
        if not url:
            db_port = free_port()
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "secantus",
                        "--port",
                        str(db_port),
                        "--storage-path",
                        f"{tmp}/db",
                        "--log-level",
                        "ERROR",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_port(db_port)
            url = f"mongodb://127.0.0.1:{db_port}/?directConnection=true"
        db = f"bench_{int(time.time())}"
        secret = new_secret()
        port = free_port()
        env = {**os.environ, "MONGODB_URL": url, "MONGODB_DB": db, "WEBHOOK_SECRET": secret}
        env.pop("CLERK_SECRET_KEY", None)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "clerksync", "serve", "--port", str(port)],
                env=env,
                cwd=tmp,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_port(port)
        target = f"http://127.0.0.1:{port}/api/webhooks/clerk"
        users = [clerk_user(email=f"u{i}@x.com", updated_at=1_000) for i in range(args.n)]
        client = httpx.Client(limits=httpx.Limits(max_connections=args.c))

        def phase(event_type: str, updated_at: int) -> tuple[float, float, float]:
            """Deliver one event per user; events/s, p50 and p99 in ms (first 50 warm up)."""
            bodies = [
                json.dumps(event(event_type, {**u, "updated_at": updated_at})).encode()
                for u in users
            ]
            signed = [(b, sign(secret, b)) for b in bodies]
            latencies: list[float] = []

            def send(item: tuple[bytes, dict[str, str]]) -> None:
                started = time.perf_counter()
                response = client.post(target, content=item[0], headers=item[1])
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200 or response.json()["outcome"] != "applied":
                    raise SystemExit(f"receiver answered {response.status_code} {response.text}")

            with ThreadPoolExecutor(args.c) as pool:
                list(pool.map(send, signed[:50]))
            latencies.clear()
            started = time.perf_counter()
            with ThreadPoolExecutor(args.c) as pool:
                list(pool.map(send, signed[50:]))
            rate = (len(signed) - 50) / (time.perf_counter() - started)
            latencies.sort()
            p99 = latencies[int(len(latencies) * 0.99) - 1]
            return rate, statistics.median(latencies) * 1000, p99 * 1000

        created = phase("user.created", 1_000)
        updated = phase("user.updated", 2_000)
        base = baseline(url, db, args.n, args.c)
        print(f"deliveries: {args.n - 50} per phase at concurrency {args.c}")
        print(f"baseline: {base:.0f} raw pymongo single-document upserts/s (w=majority, j=true)")
        for label, (rate, p50, p99) in (
            ("user.created (new users: the write + a tombstone read)", created),
            ("user.updated (existing users: one write)", updated),
        ):
            print(f"{label}")
            print(
                f"  {rate:.0f} events/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
                f"ratio {rate / base:.2f} (goal >= 0.8)"
            )
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
