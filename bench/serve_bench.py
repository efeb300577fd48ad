"""Receiver throughput and CPU vs raw pymongo upserts, against the same database in the same
run, in three configurations: no Clerk key (write-backs wait); a key with the write-back
workers running against a fake Clerk at a development instance's limit (100 requests /
10 s), what users run; both with the app's unique email and username indexes in place (the
Next.js guide's model); and the key without the app's indexes (the FastAPI report's Beanie
model: each signup then reads the index list, so that an index the app makes is used from
the next signup on, and asks whether the app has documents to adopt).

Starts a SecantusDB server per configuration unless MONGODB_URL is set, a fake Clerk in its
own process, then `clerksync serve` in its own process per configuration, and sends
svix-signed deliveries over loopback at concurrency C: first ``user.created`` for N new
users, then ``user.updated`` for each of them. Prints events/s, p50 and p99 latency per
phase, and, to tell where the time goes, the CPU each process spent per event and the
database operations per event (the server's ``opcounters``).

The baseline is raw pymongo single-document upserts of the same user documents
(same write concern, same indexes, same concurrency, same server), into a
collection of its own. The test server gets slower as a collection grows, so
the two are interleaved in chunks: after each chunk of deliveries, a chunk of
baseline upserts of the same size, so both always write to collections of the
same size. Goals, per configuration and phase: the receiver's CPU per delivery <= 0.6 ms;
the database's CPU per delivery <= 1.2x its CPU per raw upsert in the same run; ingest
>= 0.8x the raw upserts; p99 < 200 ms at concurrency 16; the keyed ratio >= 0.9 of the
no-key one. A summary table ends the run.

``--metrics both`` (the default) runs two receivers per configuration, one with its
``/metrics`` recording and one started with ``--no-metrics``, each on a database of its own
on the same server, their chunks interleaved with each other and the baseline: the
metrics' cost on ingest is the ratio of the two, measured in the same run.

    python bench/serve_bench.py [-n 1500] [-c 16] [--chunk 250]
                                [--only nokey|key|key-noindexes] [--metrics on|off|both]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness import free_port, latency_ms, start_database, stop, teardown, wait_port
from pymongo import MongoClient

from clerksync.clerk.webhooks import new_secret, sign
from clerksync.devtools.payloads import clerk_user, event
from clerksync.kinds.user import parse_clerk_user
from clerksync.mapping.documents import upsert_update
from clerksync.mapping.schema import NEXTJS
from clerksync.store.database import Store
from clerksync.store.mongo import utcnow


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    return sum(cpu_times(pid))


def timed_pool(fn: Any, items: list[Any], c: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(c) as pool:
        list(pool.map(fn, items))
    return time.perf_counter() - started


FAKE_KEY = "sk_test_" + "b3nch" * 8  # a development key: 100 requests / 10 s


def serve_fake(users_file: str) -> None:
    """Child: a fake Clerk at a development instance's limit holding the bench's users."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.support.fakeclerk import FakeClerk

    fake = FakeClerk(secret_key=FAKE_KEY, instance_limit=100, window=10.0)
    for user in json.loads(Path(users_file).read_text()):
        fake.users[user["id"]] = user
    print(fake.start(), flush=True)
    while True:
        time.sleep(3600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1500)
    parser.add_argument("-c", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=250)
    parser.add_argument("--only", choices=list(CONFIGS))
    parser.add_argument("--metrics", choices=["on", "off", "both"], default="both")
    args = parser.parse_args()
    arms = ["on", "off"] if args.metrics == "both" else [args.metrics]
    procs: list[subprocess.Popen[bytes]] = []
    tmp = tempfile.mkdtemp(prefix="clerksync-bench-")
    try:
        shared_url = os.environ.get("MONGODB_URL")
        configs = [c for c in CONFIGS if args.only in (None, c)]
        # Distinct emails and usernames: the app's unique indexes (below) are in place.
        users = {
            (c, a): [
                clerk_user(email=f"{tag(c)}{a}{i}@x.com", username=f"{tag(c)}{a}{i}")
                for i in range(args.n)
            ]
            for c in configs
            for a in arms
        }
        warm = {
            (c, a): [
                clerk_user(email=f"w{tag(c)}{a}{i}@x.com", username=f"w{tag(c)}{a}{i}")
                for i in range(30)
            ]
            for c in configs
            for a in arms
        }
        users_file = Path(tmp) / "users.json"
        users_file.write_text(json.dumps([u for k in users for u in users[k] + warm[k]]))
        fake = subprocess.Popen(
            [sys.executable, __file__, "--serve-fake", str(users_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(fake)  # type: ignore[arg-type]
        assert fake.stdout is not None
        api = fake.stdout.readline().strip()
        results = {}
        for config in configs:
            keyed, indexed = CONFIGS[config]
            watched: dict[str, int] = {}  # process -> pid, for CPU time per event
            url = shared_url
            db_proc = None
            if not url:
                # A fresh server per configuration: the second one measured on a server the
                # first had just filled and dropped ran 2-4x slower, whichever it was.
                db_proc, url = start_database(f"{tmp}/db_{config}")
                watched["database"] = db_proc.pid
            try:
                results[config] = run_config(
                    args,
                    url,
                    watched,
                    {a: users[config, a] for a in arms},
                    {a: warm[config, a] for a in arms},
                    keyed,
                    indexed,
                    api,
                    fake.pid,
                    tmp,
                )
            finally:
                if db_proc is not None:
                    stop([db_proc])
        print(
            f"{args.n} deliveries per phase at concurrency {args.c}, interleaved in chunks of "
            f"{args.chunk} with the baseline (raw pymongo single-document upserts of the same "
            "documents, w=majority, j=true, same indexes); load "
            + ", ".join(f"{x:.2f}" for x in os.getloadavg())
        )
        for config, (phases, written) in results.items():
            print(f"{LABELS[config]} ({written} users written back during the run)")
            for label, by_arm in zip(PHASES, phases, strict=True):
                for arm, r in by_arm.items():
                    report(f"{label}, metrics {arm}", r, args.n)
                if len(by_arm) == 2:
                    on, off = by_arm["on"], by_arm["off"]
                    print(
                        f"    metrics on vs off: {on['rate'] / off['rate']:.2f} of the events/s, "
                        f"p50 {on['p50']:.1f} vs {off['p50']:.1f} ms, p99 {on['p99']:.1f} vs "
                        f"{off['p99']:.1f} ms"
                    )
        if "nokey" in results and "key" in results:
            for phase in (0, 1):
                nokey = results["nokey"][0][phase][arms[0]]
                key = results["key"][0][phase][arms[0]]
                ratio_nokey = nokey["rate"] / nokey["base"]
                ratio_key = key["rate"] / key["base"]
                print(
                    f"{('user.created', 'user.updated')[phase]}: ratio with write-backs "
                    f"{ratio_key:.2f} vs {ratio_nokey:.2f} without: "
                    f"{ratio_key / ratio_nokey:.2f} of the no-key figure (goal >= 0.9)"
                )
        summary(results, args.n)
    finally:
        teardown(procs, tmp)


CONFIGS = {  # name -> (a Clerk key with the write-back running, the app's unique indexes)
    "nokey": (False, True),
    "key": (True, True),
    "key-noindexes": (True, False),
}
LABELS = {
    "nokey": "no CLERK_SECRET_KEY (write-backs wait); the app's unique indexes in place",
    "key": "CLERK_SECRET_KEY set, fake Clerk at a development limit (100 / 10 s): write-back "
    "workers running; the app's unique indexes in place (what the guide's users run)",
    "key-noindexes": "CLERK_SECRET_KEY set, write-back workers running; no app indexes (the "
    "Beanie model: each signup reads the index list)",
}
PHASES = (
    "user.created (new users: an insert + a tombstone read, grouped)",
    "user.updated (existing users: one ordered write, grouped)",
)


def tag(config: str) -> str:
    """The configuration's name as it may appear in an email and a username."""
    return config.replace("-", "")


def per_delivery(r: dict[str, Any], n: int) -> tuple[float, float, float]:
    """(receiver CPU ms per delivery, database CPU ms per delivery, per raw upsert)."""
    receiver = sum(v for k, v in r["cpu_ours"].items() if k.startswith("receiver")) / n * 1000
    database = r["cpu_ours"].get("database", float("nan")) / n * 1000
    raw = r["cpu_theirs"].get("database", float("nan")) / n * 1000
    return receiver, database, raw


def summary(results: dict[str, Any], n: int) -> None:
    """One line per configuration, phase and metrics arm: the issue's figures and goals."""
    print(
        "summary: receiver CPU/delivery (goal <= 0.6 ms) | database CPU/delivery vs per raw "
        "upsert (goal <= 1.2x) | ingest vs raw upserts (goal >= 0.8) | p99 (goal < 200 ms)"
    )
    for config, (phases, _) in results.items():
        for phase, by_arm in zip(("created", "updated"), phases, strict=True):
            for arm, r in by_arm.items():
                receiver, database, raw = per_delivery(r, n)
                print(
                    f"  {config:<13} {phase:<8} metrics {arm:<3}  receiver {receiver:.2f} ms | "
                    f"database {database:.2f} vs {raw:.2f} ms: {database / raw:.2f}x | "
                    f"ingest {r['rate'] / r['base']:.2f} | p99 {r['p99']:.0f} ms "
                    f"(raw upserts' {r['base_p99']:.0f} ms)"
                )


def report(label: str, r: dict[str, Any], n: int) -> None:
    print(" ", label)
    print(
        f"    receiver {r['rate']:.0f} events/s (p50 {r['p50']:.1f} ms, p99 "
        f"{r['p99']:.1f} ms); baseline {r['base']:.0f} upserts/s; "
        f"ratio {r['rate'] / r['base']:.2f} (goal >= 0.8)"
    )
    for side in ("ours", "theirs"):
        name = "receiver run" if side == "ours" else "baseline run"
        spent_ = r[f"cpu_{side}"]
        per_event = ", ".join(
            f"{proc} {seconds / n * 1000:.2f}"
            for proc, seconds in spent_.items()
            if not proc.startswith("op:")
        )
        ops = ", ".join(
            f"{op[3:]} {count / n:.2f}"
            for op, count in spent_.items()
            if op.startswith("op:") and count
        )
        print(f"    {name}: CPU ms per event: {per_event}; database ops per event: {ops}")


def app_indexes(users: Any) -> None:
    """The indexes the app's own model builds (the Next.js guide's Mongoose model declares
    ``email`` and ``username`` unique): users run clerksync beside them, so the bench does."""
    users.create_index("email", unique=True, name="email_1")
    users.create_index("username", unique=True, name="username_1")


def run_config(
    args: Any,
    url: str,
    watched: dict[str, int],
    users: dict[str, list[dict[str, Any]]],
    warm: dict[str, list[dict[str, Any]]],
    keyed: bool,
    indexed: bool,
    api: str,
    fake_pid: int,
    tmp: str,
) -> tuple[tuple[dict[str, Any], dict[str, Any]], int]:
    """One configuration: a receiver process and a database per arm (metrics on, off), one
    baseline; both phases, each arm's chunks interleaved with the other's and the baseline's."""
    procs: list[subprocess.Popen[bytes]] = []
    stamp = int(time.time())
    name = ("key" if keyed else "nokey") + ("_indexed" if indexed else "")
    dbs = {arm: f"bench_{name}_{arm}_{stamp}" for arm in users}
    ports = {arm: free_port() for arm in users}
    try:
        secret = new_secret()
        for arm, db in dbs.items():
            env = {**os.environ, "MONGODB_URL": url, "MONGODB_DB": db, "WEBHOOK_SECRET": secret}
            env.pop("CLERK_SECRET_KEY", None)
            if keyed:
                env.update({"CLERK_SECRET_KEY": FAKE_KEY, "CLERK_API_URL": api})
                watched["fake clerk"] = fake_pid
            if indexed:
                app_indexes(MongoClient(url)[db]["users"])
            command = [sys.executable, "-m", "clerksync", "serve", "--port", str(ports[arm])]
            if arm == "off":
                command.append("--no-metrics")
            procs.append(
                subprocess.Popen(
                    command,
                    env=env,
                    cwd=tmp,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_port(ports[arm])
            watched[f"receiver {arm}"] = procs[-1].pid

        # The baseline collection: the same indexes as users, the same write concern.
        first = next(iter(dbs.values()))
        base_store = Store(MongoClient(url, tz_aware=True), first + "_baseline")
        base_store.ensure_indexes()
        base = base_store.users
        if indexed:
            app_indexes(base)
        # One keep-alive connection per sending thread and receiver, on the standard
        # library's client: Svix sends from elsewhere, so the sender should take as little
        # of this machine's two cores from the receiver and the database as it can (httpx
        # took 1.9 ms of CPU per request here, http.client takes a fraction of that).
        local = threading.local()

        def post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
            conns = getattr(local, "conns", None)
            if conns is None:
                conns = local.conns = {}
            conn = conns.get(port)
            if conn is None:
                conn = conns[port] = http.client.HTTPConnection("127.0.0.1", port)
            conn.request("POST", "/api/webhooks/clerk", body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()

        def deliver(item: tuple[int, bytes, dict[str, str], list[float]]) -> None:
            port, body, headers, latencies = item
            started = time.perf_counter()
            status, answer = post(port, body, headers)
            latencies.append(time.perf_counter() - started)
            if status != 200 or json.loads(answer)["outcome"] != "applied":
                raise SystemExit(f"receiver answered {status} {answer!r}")

        def cpu() -> dict[str, float]:
            times = {name: cpu_seconds(pid) for name, pid in watched.items()}
            ops = base_store.client.admin.command("serverStatus").get("opcounters", {})
            return {
                **times,
                "client": time.process_time(),
                **{f"op:{k}": v for k, v in ops.items()},
            }

        def spent(before: dict[str, float], into: dict[str, float]) -> None:
            for name, value in cpu().items():
                into[name] = into.get(name, 0.0) + value - before[name]

        def phase(event_type: str, updated_at: int) -> dict[str, dict[str, Any]]:
            latencies: dict[str, list[float]] = {arm: [] for arm in users}
            ours = dict.fromkeys(users, 0.0)
            theirs = 0.0
            cpu_ours: dict[str, dict[str, float]] = {arm: {} for arm in users}
            cpu_theirs: dict[str, float] = {}
            base_latencies: list[float] = []
            now = utcnow()
            for start in range(0, args.n, args.chunk):
                # each arm goes first every other chunk: neither always meets a fresher server
                order = list(users.items())
                if (start // args.chunk) % 2:
                    order.reverse()
                for arm, arm_users in order:
                    chunk = [
                        {**u, "updated_at": updated_at}
                        for u in arm_users[start : start + args.chunk]
                    ]
                    bodies = [json.dumps(event(event_type, u)).encode() for u in chunk]
                    items = [(ports[arm], b, sign(secret, b), latencies[arm]) for b in bodies]
                    before = cpu()
                    ours[arm] += timed_pool(deliver, items, args.c)
                    spent(before, cpu_ours[arm])
                chunk = [
                    {**u, "updated_at": updated_at}
                    for u in next(iter(users.values()))[start : start + args.chunk]
                ]
                parsed = [parse_clerk_user(u) for u in chunk]

                def raw(u: Any) -> None:
                    started = time.perf_counter()
                    base.update_one(
                        {"clerkId": u.id}, upsert_update(u, now, NEXTJS.users)[0], upsert=True
                    )
                    base_latencies.append(time.perf_counter() - started)

                before = cpu()
                theirs += timed_pool(raw, parsed, args.c)
                spent(before, cpu_theirs)
            found = {}
            base_p99 = latency_ms(base_latencies)[1]
            for arm in users:
                p50, p99 = latency_ms(latencies[arm])
                found[arm] = {
                    "rate": args.n / ours[arm],
                    "base": args.n / theirs,
                    "p50": p50,
                    "p99": p99,
                    "base_p99": base_p99,
                    "cpu_ours": cpu_ours[arm],
                    "cpu_theirs": cpu_theirs,
                }
            return found

        # warm up every path (imports, connections) on users outside the measured set
        for arm, arm_warm in warm.items():
            timed_pool(
                deliver,
                [
                    (ports[arm], b, sign(secret, b), [])
                    for b in (json.dumps(event("user.created", u)).encode() for u in arm_warm)
                ],
                4,
            )
        created = phase("user.created", 1_000)
        updated = phase("user.updated", 2_000)
        written = sum(
            base_store.client[db].users.count_documents(
                {"clerksync.metadata.userMongoId": {"$type": "string"}}
            )
            for db in dbs.values()
        )
        for db in dbs.values():
            base_store.client.drop_database(db)
        base_store.client.drop_database(first + "_baseline")
        base_store.client.close()
        return (created, updated), written
    finally:
        stop(procs)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-fake":
        serve_fake(sys.argv[2])
    else:
        main()
