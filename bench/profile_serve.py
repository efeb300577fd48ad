"""Where the receiver's CPU goes per delivery: py-spy samples the thread of a `clerksync
serve` process that holds the GIL (where its Python CPU goes) while it takes signed
``user.created`` then ``user.updated`` deliveries at concurrency C, after a warm-up, and
prints the top functions, inclusive and self, as shares of the samples. Also prints the
receiver's CPU per delivery measured without the profiler attached, in the same run (the
profiler costs the process).

    python bench/profile_serve.py [-n 1500] [-c 16] [--no-key] [--top 30]

As users run it: a Clerk key set (a fake Clerk at a development limit, so the write-back
workers run) and the app's unique email and username indexes in place. ``--no-key``
profiles the narrower configuration without write-backs.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from harness import free_port, start_database, teardown, wait_port
from pymongo import MongoClient
from serve_bench import FAKE_KEY, app_indexes, cpu_times, timed_pool

from clerksync.clerk.webhooks import new_secret, sign
from clerksync.devtools.payloads import clerk_user, event


def deliverer(port: int) -> Any:
    """A sender that insists on "applied": one keep-alive ``http.client`` connection per
    sending thread (it takes less of the machine's two cores than httpx would)."""
    local = threading.local()

    def deliver(item: tuple[bytes, dict[str, str], list[float]]) -> None:
        body, headers, _ = item
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("POST", "/api/webhooks/clerk", body=body, headers=headers)
        response = conn.getresponse()
        answer = response.read()
        if response.status != 200 or json.loads(answer)["outcome"] != "applied":
            raise SystemExit(f"receiver answered {response.status} {answer!r}")

    return deliver


def aggregate(path: Path, top: int) -> None:
    """py-spy's raw output (one collapsed stack per line) as inclusive and self shares."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [
            re.sub(r":\d+\)$", ")", f)
            for f in stack.split(";")
            if not f.startswith(("process ", "thread "))
        ]
        if not frames:
            continue
        n = int(count)
        total += n
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    print(f"samples: {total}")
    print("inclusive:")
    for frame, n in inclusive.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {frame}")
    print("self:")
    for frame, n in own.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1500)
    parser.add_argument("-c", type=int, default=16)
    parser.add_argument("--no-key", dest="key", action="store_false")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="clerksync-prof-")
    procs: list[subprocess.Popen[Any]] = []
    try:
        users = [clerk_user(email=f"p{i}@x.com", username=f"p{i}") for i in range(2 * args.n)]
        db_proc, url = start_database(f"{tmp}/db")
        procs.append(db_proc)
        secret = new_secret()
        port = free_port()
        env = {**os.environ, "MONGODB_URL": url, "MONGODB_DB": "prof", "WEBHOOK_SECRET": secret}
        env.pop("CLERK_SECRET_KEY", None)
        if args.key:
            users_file = Path(tmp) / "users.json"
            users_file.write_text(json.dumps(users))
            fake = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).with_name("serve_bench.py")),
                    "--serve-fake",
                    str(users_file),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(fake)
            assert fake.stdout is not None
            api = fake.stdout.readline().strip()
            env.update({"CLERK_SECRET_KEY": FAKE_KEY, "CLERK_API_URL": api})
        app_indexes(MongoClient(url)["prof"]["users"])
        receiver = subprocess.Popen(
            [sys.executable, "-m", "clerksync", "serve", "--port", str(port)],
            env=env,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(receiver)
        wait_port(port)
        deliver = deliverer(port)

        def batch(kind: str, chunk: list[dict[str, Any]], at: int) -> list[Any]:
            bodies = [json.dumps(event(kind, {**u, "updated_at": at})).encode() for u in chunk]
            return [(b, sign(secret, b), []) for b in bodies]

        timed_pool(deliver, batch("user.created", users[:50], 1), 4)  # warm up
        # Unprofiled: the receiver's CPU per delivery.
        plain = users[50 : 50 + args.n]
        before = cpu_times(receiver.pid)
        wall = timed_pool(deliver, batch("user.created", plain, 1), args.c)
        wall += timed_pool(deliver, batch("user.updated", plain, 2), args.c)
        user, system = (
            (now - then) / (2 * len(plain)) * 1000
            for now, then in zip(cpu_times(receiver.pid), before, strict=True)
        )
        rate = 2 * len(plain) / wall
        config = "Clerk key set, write-backs on" if args.key else "no Clerk key (narrower)"
        print(f"{config}; the app's unique indexes in place")
        print(
            f"receiver CPU per delivery, unprofiled: {user + system:.2f} ms (user {user:.2f}, "
            f"system {system:.2f}; {rate:.0f}/s)"
        )
        # Profiled.
        out = Path(tmp) / "profile.txt"
        spy = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "-p",
                str(receiver.pid),
                "-f",
                "raw",
                "-r",
                "250",
                *([] if os.environ.get("PROFILE_ALL") else ["--gil"]),
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        profiled = users[50 + args.n : 50 + 2 * args.n]
        timed_pool(deliver, batch("user.created", profiled, 1), args.c)
        timed_pool(deliver, batch("user.updated", profiled, 2), args.c)
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
        print(f"`uptime`: {os.getloadavg()[0]:.2f} load")
        aggregate(out, args.top)
    finally:
        teardown(procs, tmp)


if __name__ == "__main__":
    main()
