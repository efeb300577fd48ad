"""The app's side, for a user the database holds: what ``ensure_user`` and the FastAPI
dependency cost over the least they could.

1. ``ensure_user`` of an existing user against a raw pymongo ``find_one`` by Clerk id on
   the same collection, client and server (goal: <= 1.2x).
2. A FastAPI route that depends on ``clerksync.fastapi.current_user`` against the same
   route that only verifies the session token (the SDK's ``authenticate_request`` with
   ``CLERK_JWT_KEY``), both served by one uvicorn process, over loopback HTTP on keep-alive
   connections (goal: <= 1.3x). Beside it, the floors of the one read the dependency must
   make: the token check plus a raw ``find_one`` in a worker thread (what it does), through
   pymongo's async client, and blocking the loop. On a server whose ``find_one`` costs as
   much as a whole HTTP request (the Python test server), no route that reads can meet 1.3x;
   the figure to watch is the dependency against its floor.

Each pair is measured in the same run, interleaved in chunks, after a warm-up; the load is
printed with the figures. Starts a SecantusDB server unless MONGODB_URL is set.

    python bench/app_bench.py [-n 3000] [--chunk 50] [-c 1]
"""

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from harness import free_port, latency_ms, start_database, teardown, wait_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

USERS = 200  # users stored (and asked for in turn), among 10,000 documents


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def serve_app(port: int) -> None:
    """Child: the two routes on uvicorn (the settings come from the environment)."""
    import uvicorn
    from anyio import to_thread
    from fastapi import Depends, FastAPI, Request
    from pymongo import AsyncMongoClient

    from clerksync.app.auth import SessionAuth
    from clerksync.fastapi import current_user
    from clerksync.settings import load_settings
    from clerksync.store.connect import connect

    settings = load_settings()
    auth = SessionAuth.from_settings(settings, None)
    store = connect(settings)
    async_users: list[Any] = []
    app = FastAPI()

    @app.get("/me")
    async def me(user: dict = Depends(current_user)) -> dict:  # noqa: B008
        return {"id": str(user["_id"])}

    def verified(request: Request) -> str:
        return auth.user_id(request.headers)

    @app.get("/verified")
    async def only_verified(user_id: str = Depends(verified)) -> dict:  # noqa: B008
        return {"id": user_id}

    @app.get("/async")
    async def async_floor(user_id: str = Depends(verified)) -> dict:  # noqa: B008
        if not async_users:
            client: Any = AsyncMongoClient(settings.mongodb_url, tz_aware=True)
            async_users.append(client[store.name]["users"])
        doc = await async_users[0].find_one({"clerkId": user_id})
        return {"id": str(doc["_id"])}

    @app.get("/inline")
    async def inline_floor(user_id: str = Depends(verified)) -> dict:  # noqa: B008
        doc = store.users.find_one({"clerkId": user_id})  # blocks the loop: a floor only
        return {"id": str(doc["_id"])}

    @app.get("/floor")
    async def floor(user_id: str = Depends(verified)) -> dict:  # noqa: B008
        doc = await to_thread.run_sync(store.users.find_one, {"clerkId": user_id})
        return {"id": str(doc["_id"])}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def timed(fn: Any, items: list[Any], c: int) -> list[float]:
    """Each call's latency in seconds, ``c`` callers at a time."""

    def one(item: Any) -> float:
        started = time.perf_counter()
        fn(item)
        return time.perf_counter() - started

    if c == 1:
        return [one(item) for item in items]
    with ThreadPoolExecutor(c) as pool:
        return list(pool.map(one, items))


class Pair(NamedTuple):
    spent_a: float  # wall seconds of ``a``
    spent_b: float
    latencies: list[float]  # ``a``'s, each call
    chunk_ratios: list[float]  # ``a`` / ``b``, chunk by chunk

    @property
    def ratio(self) -> float:
        return self.spent_a / self.spent_b

    @property
    def median(self) -> float:
        """The median of the chunks' ratios: each chunk of ``a`` is next to its chunk of
        ``b`` in time, so a burst of load on this shared machine moves one chunk, not the
        figure."""
        return statistics.median(self.chunk_ratios)

    def shown(self) -> str:
        return f"{self.ratio:.2f}x (chunk by chunk: median {self.median:.2f}x)"


def interleaved(a: Any, b: Any, items: list[Any], chunk: int, c: int) -> Pair:
    """``a`` and ``b`` over ``items``, chunk by chunk in turn."""
    spent_a = spent_b = 0.0
    latencies: list[float] = []
    ratios: list[float] = []
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        began = time.perf_counter()
        latencies += timed(a, part, c)
        took_a = time.perf_counter() - began
        began = time.perf_counter()
        timed(b, part, c)
        took_b = time.perf_counter() - began
        spent_a += took_a
        spent_b += took_b
        ratios.append(took_a / took_b)
    return Pair(spent_a, spent_b, latencies, ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=3000)
    parser.add_argument("--chunk", type=int, default=50)
    parser.add_argument("-c", type=int, default=1, help="callers at a time")
    args = parser.parse_args()

    from pymongo import MongoClient

    from clerksync.app.ensure import Ensurer
    from clerksync.devtools.payloads import clerk_user
    from clerksync.kinds.user import USER, parse_clerk_user
    from clerksync.settings import load_settings
    from clerksync.store.connect import connect
    from clerksync.store.users import writer
    from tests.support import tokens

    procs: list[subprocess.Popen[Any]] = []
    tmp = tempfile.mkdtemp(prefix="clerksync-app-bench-")
    try:
        url = os.environ.get("MONGODB_URL")
        if not url:
            db_proc, url = start_database(f"{tmp}/db")
            procs.append(db_proc)
        env = {
            **os.environ,
            "MONGODB_URL": url,
            "MONGODB_DB": f"app_bench_{int(time.time())}",
            "CLERK_JWT_KEY": tokens.public_pem(),
            "CLERK_AUTHORIZED_PARTIES": tokens.ORIGIN,
        }
        env.pop("CLERK_SECRET_KEY", None)  # existing users only: Clerk is never called
        settings = load_settings(environ=env)
        store = connect(settings)
        store.ensure_indexes()
        write = writer(store)
        ids = []
        for i in range(10_000):
            user = parse_clerk_user(clerk_user(user_id=f"user_b{i:06d}", email=f"b{i}@x.com"))
            if i % 50 == 0:
                write.upsert(USER, user, likely_new=True)
                ids.append(user.id)
        # the rest as a bulk: the collection the reads run against holds 10,000 documents
        docs = [
            {"clerkId": f"user_f{i:06d}", "email": f"f{i}@x.com", "firstName": "F"}
            for i in range(10_000 - len(ids))
        ]
        store.users.insert_many(docs)
        items = [ids[i % len(ids)] for i in range(args.n)]
        print(f"{store.count():,} documents, {len(ids)} users asked for in turn, {args.n} calls")

        # -- 1. ensure_user vs find_one ----------------------------------------------------
        ensurer = Ensurer(store)
        raw = MongoClient(url, tz_aware=True)[store.name]["users"]  # its own client
        for user_id in ids:  # warm both
            ensurer.ensure(user_id)
            raw.find_one({"clerkId": user_id})
        print(f"1. ensure_user of an existing user vs a raw find_one by Clerk id ({load()})")
        pair = interleaved(
            ensurer.ensure, lambda i: raw.find_one({"clerkId": i}), items, args.chunk, args.c
        )
        p50, p99 = latency_ms(pair.latencies)
        print(
            f"   ensure_user {args.n / pair.spent_a:.0f}/s (p50 {p50:.2f} ms, p99 {p99:.2f} ms); "
            f"find_one {args.n / pair.spent_b:.0f}/s; ratio {pair.shown()} (goal <= 1.2x)"
        )

        # -- 2. the dependency vs the token check alone --------------------------------------
        port = free_port()
        app = subprocess.Popen(
            [sys.executable, __file__, "--serve-app", str(port)],
            env={**env, "PYTHONPATH": str(ROOT)},
            cwd=tmp,
        )
        procs.append(app)
        wait_port(port)
        headers = {u: tokens.bearer(tokens.session_token(u, lifetime=3600)) for u in ids}
        local = threading.local()

        def get(path: str, user_id: str) -> None:
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", path, headers=headers[user_id])
            answer = conn.getresponse()
            answer.read()
            if answer.status != 200:
                raise SystemExit(f"GET {path} answered {answer.status}")

        for user_id in ids:  # warm: the first request builds the dependency's clients
            get("/me", user_id)
            get("/verified", user_id)
            get("/floor", user_id)
            get("/async", user_id)
            get("/inline", user_id)
        print(f"2. a route through current_user vs the same route verifying the token ({load()})")

        def route(path: str) -> Any:
            return lambda user_id: get(path, user_id)

        pair = interleaved(route("/me"), route("/verified"), items, args.chunk, args.c)
        p50, p99 = latency_ms(pair.latencies)
        print(
            f"   current_user {args.n / pair.spent_a:.0f}/s (p50 {p50:.2f} ms, p99 {p99:.2f} ms); "
            f"token check only {args.n / pair.spent_b:.0f}/s; ratio {pair.shown()} "
            "(goal <= 1.3x)"
        )
        print("   floors: the token check and the one read the dependency must make, against")
        print("   the token check only:")
        for path, what in (
            ("/floor", "a raw find_one in a worker thread (what current_user does)"),
            ("/async", "pymongo's AsyncMongoClient instead"),
            ("/inline", "the find_one blocking the event loop (no app may)"),
        ):
            pair = interleaved(route(path), route("/verified"), items, args.chunk, args.c)
            print(f"     {what}: {args.n / pair.spent_a:.0f}/s, {pair.shown()}")
        pair = interleaved(route("/me"), route("/floor"), items, args.chunk, args.c)
        print(
            "   current_user against the first floor (what clerksync adds to the least a "
            f"route that reads the user can do): {pair.shown()}"
        )
        print(f"   after: {load()}")
        store.client.drop_database(store.name)
        store.close()
    finally:
        teardown(procs, tmp)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-app":
        serve_app(int(sys.argv[2]))
    else:
        main()
