"""Bulk jobs against a fake Clerk enforcing a production-like limit (1000 requests / 10 s).

Prints, for ``reconcile`` of N Clerk users (10,000 and 100,000 by default) and for
``sync-metadata`` of 10,000 users with a quarter drifted:

- requests made vs the minimum possible;
- wall time as a ratio to the floor measured in the same run: the larger of the
  time the rate limit alone imposes (minimum requests / 100 per s) and the time
  the database takes for the same writes done as plain pymongo bulk writes
  (``insert_many`` of the new users for reconcile; bulk updates by ``_id`` for
  sync-metadata's bookkeeping) (goal <= 1.15);
- peak memory (max RSS of the process running the job) at each size (goal: flat).

Each job runs in a fresh child process, the fake Clerk in another, the
database (secantusd-py) in a third, so none shares a GIL or a heap.

    python bench/bulk_bench.py [--sizes 10000,100000] [--sync 10000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import start_database  # noqa: E402  (bench/ is on the path: scripts run from it)

LIMIT, WINDOW = 1000, 10.0
KEY = "sk_live_" + "b3nch" * 8


def clerk_users(n: int, prefix: str) -> list[dict[str, Any]]:
    from clerksync.payloads import clerk_user

    return [
        clerk_user(
            user_id=f"user_{prefix}{i:07d}",
            email=f"{prefix}{i}@x.com",
            created_at=1_000_000 + i,
            updated_at=2_000_000,
        )
        for i in range(n)
    ]


def peak_rss_kib() -> int:
    """This process's own peak RSS. Not ru_maxrss: on Linux that keeps the high-water mark of
    the parent's memory forked before exec, so a big driver inflates every child's figure."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# -- child roles -------------------------------------------------------------------------------


def serve_fake(n: int, prefix: str, metadata_file: str | None) -> None:
    """Child: a fake Clerk with n users (metadata from a file), printing its URL."""
    from tests.fakeclerk import FakeClerk

    fake = FakeClerk(secret_key=KEY, instance_limit=LIMIT, window=WINDOW)
    metadata = json.loads(Path(metadata_file).read_text()) if metadata_file else {}
    for user in clerk_users(n, prefix):
        user["public_metadata"] = metadata.get(user["id"], {})
        fake.users[user["id"]] = user
    print(fake.start(), flush=True)
    while True:
        time.sleep(3600)


def run_job(job: str, mongo_url: str, db: str, api: str) -> None:
    """Child: one job through the library, as the CLI runs it; prints figures as JSON."""
    from pymongo import MongoClient

    from clerksync.clerk import ClerkGateway, default_rate
    from clerksync.store import UserStore
    from clerksync.sync import reconcile, sync_metadata

    store = UserStore(MongoClient(mongo_url, tz_aware=True), db)
    store.ensure_indexes()
    gateway = ClerkGateway(KEY, api_url=api)
    started = time.perf_counter()
    if job == "reconcile":
        summary = reconcile(store, gateway, rate=default_rate(KEY))
    else:
        summary = sync_metadata(store, gateway, rate=default_rate(KEY))
    elapsed = time.perf_counter() - started
    peak_kib = peak_rss_kib()
    print(
        json.dumps(
            {
                "elapsed": elapsed,
                "requests": gateway.requests,
                "peak_mib": peak_kib / 1024,
                "summary": {k: v for k, v in summary.items() if isinstance(v, int)},
            }
        )
    )


# -- the driver --------------------------------------------------------------------------------


def child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )


def start_fake(n: int, prefix: str, metadata_file: str | None = None) -> tuple[Any, str]:
    proc = child("--serve-fake", str(n), prefix, metadata_file or "")
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def job(name: str, mongo_url: str, db: str, api: str) -> dict[str, Any]:
    proc = child("--job", name, mongo_url, db, api)
    out, _ = proc.communicate()
    return json.loads(out.strip().splitlines()[-1])


def bulk_floor(mongo_url: str, db: str, n: int, prefix: str) -> float:
    """Seconds for the same writes as plain pymongo bulk writes of 500: the same new user
    documents inserted with ``insert_many`` (the cheapest way to create them) into a users
    collection with the same indexes and write concern (no reads, no ordering rule, no
    tombstones, no Clerk)."""
    from pymongo import MongoClient

    from clerksync.mongo import utcnow
    from clerksync.ordering import new_document, upsert_update
    from clerksync.schema import NEXTJS
    from clerksync.store import UserStore
    from clerksync.users import parse_clerk_user

    store = UserStore(MongoClient(mongo_url, tz_aware=True), db)
    store.ensure_indexes()
    users = [parse_clerk_user(u) for u in clerk_users(n, prefix)]
    now = utcnow()
    started = time.perf_counter()
    for offset in range(0, n, 500):
        store.users.insert_many(
            [new_document(upsert_update(u, now, NEXTJS)[0]) for u in users[offset : offset + 500]],
            ordered=False,
        )
    elapsed = time.perf_counter() - started
    store.client.drop_database(db)
    return elapsed


def bookkeeping_floor(mongo_url: str, db: str, n: int, prefix: str, *, writes: int) -> float:
    """Seconds for sync-metadata's own MongoDB writes (record Clerk's copy, clear the pending
    mark, for each user written) as plain bulk writes of 500 by ``_id``, in a users
    collection of n users with the same indexes."""
    from pymongo import MongoClient, UpdateOne

    from clerksync.store import UserStore
    from clerksync.users import parse_clerk_user

    store = UserStore(MongoClient(mongo_url, tz_aware=True), db)
    store.ensure_indexes()
    store.upsert_many(parse_clerk_user(u) for u in clerk_users(n, prefix))
    docs = list(store.users.find({}, {"_id": 1}).limit(writes))
    started = time.perf_counter()
    for offset in range(0, writes, 500):
        store.users.bulk_write(
            [
                UpdateOne(
                    {"_id": d["_id"]},
                    {
                        "$set": {
                            "clerksync.metadata": {"userMongoId": str(d["_id"]), "isAdmin": False}
                        },
                        "$unset": {"clerksync.dueAt": ""},
                    },
                )
                for d in docs[offset : offset + 500]
            ],
            ordered=False,
        )
    elapsed = time.perf_counter() - started
    store.client.drop_database(db)
    return elapsed


def report(label: str, result: dict[str, Any], minimum: int, floor: float, why: str) -> None:
    print(f"{label}")
    print(f"  requests: {result['requests']} (minimum {minimum})")
    print(
        f"  wall: {result['elapsed']:.1f} s, floor {floor:.1f} s ({why}) -> "
        f"ratio {result['elapsed'] / floor:.2f} (goal <= 1.15)"
    )
    print(f"  peak memory: {result['peak_mib']:.0f} MiB; summary {result['summary']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--sync", type=int, default=10_000)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="clerksync-bulk-")
    db_proc, mongo_url = start_database(f"{tmp}/db")
    procs: list[Any] = [db_proc]
    try:
        rate_s = LIMIT / WINDOW
        peaks = {}
        for n in (int(s) for s in args.sizes.split(",") if s):
            prefix = f"r{n}_"
            fake, api = start_fake(n, prefix)
            procs.append(fake)
            db = f"reconcile_{n}"
            result = job("reconcile", mongo_url, db, api)
            again = job("reconcile", mongo_url, db, api)  # nothing left to do
            fake.kill()
            minimum = math.ceil(n / 500) + 1  # pages, and the final short/empty page
            floor_db = bulk_floor(mongo_url, f"floor_{n}", n, prefix)
            floor = max(minimum / rate_s, floor_db)
            why = "database" if floor_db >= minimum / rate_s else "rate limit"
            report(f"reconcile of {n:,} users", result, minimum, floor, why)
            summary = again["summary"]
            print(
                f"  run again: {again['elapsed']:.1f} s, {again['requests']} requests, "
                f"created {summary['created']}, updated {summary['updated']} (nothing to write)"
            )
            peaks[n] = result["peak_mib"]

        if len(peaks) > 1:
            sizes = sorted(peaks)
            print(
                f"peak memory {sizes[0]:,} -> {sizes[-1]:,} users: "
                f"{peaks[sizes[0]]:.0f} -> {peaks[sizes[-1]]:.0f} MiB "
                f"(x{peaks[sizes[-1]] / peaks[sizes[0]]:.2f}; goal: flat)"
            )

        n = args.sync
        prefix = "s_"
        if not n:
            return
        from pymongo import MongoClient

        from clerksync.store import UserStore
        from clerksync.users import parse_clerk_user

        store = UserStore(MongoClient(mongo_url, tz_aware=True), "sync_bench")
        store.ensure_indexes()
        store.upsert_many(parse_clerk_user(u) for u in clerk_users(n, prefix))
        docs = list(store.users.find({}, {"clerkId": 1, "clerksync.seq": 1}).sort("clerkId", 1))
        in_sync = [d for i, d in enumerate(docs) if i % 4]  # every fourth user drifted
        metadata = {d["clerkId"]: {"userMongoId": str(d["_id"]), "isAdmin": False} for d in in_sync}
        # Those in sync had their write-back land earlier: no pending mark left.
        for offset in range(0, len(in_sync), 500):
            batch = in_sync[offset : offset + 500]
            store.finish_write_backs([(d, metadata[d["clerkId"]]) for d in batch])
        meta_file = Path(tmp) / "metadata.json"
        meta_file.write_text(json.dumps(metadata))
        fake, api = start_fake(n, prefix, str(meta_file))
        procs.append(fake)
        result = job("sync-metadata", mongo_url, "sync_bench", api)
        drifted = n - len(metadata)
        minimum = math.ceil(n / 100) + drifted
        floor_db = bookkeeping_floor(mongo_url, "sync_floor", n, prefix, writes=drifted)
        floor = max(minimum / rate_s, floor_db)
        report(
            f"sync-metadata of {n:,} users, {drifted:,} drifted",
            result,
            minimum,
            floor,
            "database" if floor_db > minimum / rate_s else "rate limit",
        )
        print(f"  (database floor {floor_db:.1f} s, rate-limit floor {minimum / rate_s:.1f} s)")
    finally:
        for proc in procs:
            proc.kill()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-fake":
        serve_fake(int(sys.argv[2]), sys.argv[3], sys.argv[4] or None)
    elif len(sys.argv) > 1 and sys.argv[1] == "--job":
        run_job(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        main()
