"""What a signup costs the receiver's write path on the report's schema (fastapi preset, no
index on ``email``), at 10,000 and 100,000 documents:

- nothing of the app's to adopt: the insert, the tombstone read, and the cached "has the
  app documents of its own?" check (a scan, once per 10 s per process or
  longer, in the background after the first: "the first, which asks" below);
- app documents to adopt somewhere (one hand-made user): each verified signup also looks
  its email up, a collection scan;
- the same with the app's index on ``email``: an index probe, for comparison.

Each figure is the median of ``-n`` signups through ``Writer.upsert(likely_new=True)``
(what ``user.created`` and ``ensure_user`` run), on one SecantusDB server started here
(or MONGODB_URL), with the load printed.

    python bench/adopt_bench.py [-n 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import start_database, teardown

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=15)
    args = parser.parse_args()

    from clerksync.devtools.payloads import clerk_user
    from clerksync.kinds.user import USER, parse_clerk_user
    from clerksync.settings import load_settings
    from clerksync.store.connect import connect
    from clerksync.store.users import writer

    procs = []
    tmp = tempfile.mkdtemp(prefix="clerksync-adopt-bench-")
    try:
        url = os.environ.get("MONGODB_URL")
        if not url:
            proc, url = start_database(f"{tmp}/db")
            procs.append(proc)
        env = {"MONGODB_URL": url, "MONGODB_DB": f"adopt_{int(time.time())}"}
        store = connect(load_settings(environ={**env, "CLERKSYNC_SCHEMA": "fastapi"}))
        store.ensure_indexes()
        users = store.users
        made = 0
        serial = 0

        def signups(label: str) -> None:
            nonlocal serial
            write = writer(store)  # fresh hooks: the existence check is asked once, first
            timings = []
            for _ in range(args.n):
                serial += 1
                user = parse_clerk_user(
                    clerk_user(user_id=f"user_s{serial:07d}", email=f"s{serial}@x.com")
                )
                started = time.perf_counter()
                assert write.upsert(USER, user, likely_new=True).outcome == "applied"
                timings.append(time.perf_counter() - started)
            first, rest = timings[0], timings[1:]
            print(
                f"    {label}: {statistics.median(rest) * 1000:.1f} ms a signup "
                f"(the first, which asks: {first * 1000:.1f} ms)"
            )

        load = os.getloadavg()
        print(f"fastapi preset, no email index; load {load[0]:.2f} {load[1]:.2f}")
        for size in (10_000, 100_000):
            batch = []
            while made < size:
                made += 1
                batch.append(
                    {
                        "clerk_user_id": f"user_d{made:07d}",
                        "user_id": made,
                        "email": f"d{made}@x.com",
                        "username": f"d{made}",
                    }
                )
                if len(batch) == 5000:
                    users.insert_many(batch)
                    batch = []
            if batch:
                users.insert_many(batch)
            print(f"  {store.estimated_count():,} documents")
            users.delete_many({"clerk_user_id": "clerk_34"})
            signups("nothing of the app's to adopt")
            users.insert_one({"clerk_user_id": "clerk_34", "email": "ops@x.com", "user_id": 0})
            signups("an app document somewhere (each signup scans)")
            users.create_index("email", name="app_email")
            signups("the same with an index on email (an index probe)")
            users.drop_index("app_email")
        load = os.getloadavg()
        print(f"load after: {load[0]:.2f} {load[1]:.2f}")
        store.client.drop_database(store.name)
        store.close()
    finally:
        teardown(procs, tmp)


if __name__ == "__main__":
    main()
