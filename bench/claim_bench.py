"""What claiming a write-back costs on the wire server as the backlog grows.

Fills a users collection (same indexes as clerksync's) with N users all due for a
write-back, then times, in the same run:

- the claim the workers make (``WriteBackQueue.claim``: an ``update_one`` by key that takes
  the lease, then a read by key) — goal: flat as N grows;
- the sweep (``WriteBackQueue.sweep``: a plain indexed find of the 1,000 most overdue), which
  the workers run only when their in-memory hand-off is idle;
- the claim this replaced: ``find_one_and_update`` on ``dueAt <= now`` sorted by ``dueAt``;

and prints the plan the server reports (``explain``) for each filter.

    python bench/claim_bench.py [--sizes 1000,10000]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import timedelta
from typing import Any

from harness import start_database
from pymongo import MongoClient, ReturnDocument

from clerksync.mapping import bookkeeping as bk
from clerksync.store.database import Store
from clerksync.store.mongo import utcnow
from clerksync.writeback.queue import queue_of


def timed(fn: Any, runs: int) -> float:
    fn()  # warm
    started = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - started) / runs * 1000


def stage(plan: dict[str, Any]) -> str:
    """The winning plan's stages, outermost first (LIMIT > FETCH > IXSCAN …)."""
    names = []
    node: dict[str, Any] | None = plan.get("queryPlanner", {}).get("winningPlan")
    while node:
        names.append(
            node.get("stage", "?") + (f"({node['indexName']})" if "indexName" in node else "")
        )
        node = node.get("inputStage")
    return " > ".join(names) or "?"


def measure(store: Store, n: int) -> tuple[float, float, float]:
    """Claim, sweep and the old claim, in ms, on a collection of n due users."""
    queue = queue_of(store)
    keys = iter([{"clerkId": f"user_{i:07d}"} for i in range(n // 2, n)])
    claim_ms = timed(lambda: queue.claim(next(keys)), 50)
    sweep_ms = timed(lambda: queue.sweep(1000), 3)
    old_ms = timed(
        lambda: store.users.find_one_and_update(
            {bk.DUE: {"$lte": utcnow()}},
            {"$set": {bk.DUE: utcnow() + timedelta(seconds=60)}},
            sort=[(bk.DUE, 1)],
            return_document=ReturnDocument.AFTER,
        ),
        3,
    )
    return claim_ms, sweep_ms, old_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="clerksync-claim-")
    proc, url = start_database(f"{tmp}/db")
    try:
        client: MongoClient[Any] = MongoClient(url, tz_aware=True)
        for n in (int(s) for s in args.sizes.split(",") if s):
            store = Store(client, f"claim_{n}")
            store.ensure_indexes()
            now = utcnow()
            store.users.insert_many(
                [
                    {
                        "clerkId": f"user_{i:07d}",
                        "isAdmin": False,
                        "clerksync": {"dueAt": now - timedelta(seconds=n - i), "seq": 1},
                    }
                    for i in range(n)
                ]
            )
            claim_ms, sweep_ms, old_ms = measure(store, n)
            now = utcnow()
            claim_filter = {
                "clerkId": "user_0000001",
                bk.DUE: {"$lte": now},
                bk.LEASE_UNTIL: {"$not": {"$gt": now}},
            }
            ordering = {"clerkId": "user_0000001", bk.UPDATED_AT: {"$not": {"$gte": 1}}}
            print(f"{n:,} users due")
            print(f"  claim (update_one by key + read): {claim_ms:.2f} ms")
            print(
                f"    explain (as a find): {stage(store.users.find(claim_filter).explain())}; "
                "the server reports the same for the receiver's ordering filter "
                f"({stage(store.users.find(ordering).explain())}), which runs in ~1 ms: "
                "the timing, flat in N, is the evidence"
            )
            print(f"  sweep of the 1,000 most overdue: {sweep_ms:.1f} ms")
            due = {bk.DUE: {"$lte": now}}
            sweep_plan = store.users.find(due).sort(bk.DUE, 1).limit(1000).explain()
            print(f"    explain: {stage(sweep_plan)}")
            print(f"  the old claim (findAndModify, sorted): {old_ms:.1f} ms")
            client.drop_database(store.name)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
