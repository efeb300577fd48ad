"""What one delivery costs the fixed stack alone, beside what it costs `clerksync serve`.

The "bare" receiver is the least a webhook receiver on this stack does: uvicorn (httptools,
uvloop), svix's ``Webhook.verify``, one JSON parse, one pymongo ``insert_one`` of the user's
Clerk id, email, name and version (``w="majority", j=True``, a unique Clerk-id index), a JSON
200. No ordering, tombstones, field validation, delivery log, metrics or write-back: a
receiver that loses users, kept here as the floor. It runs with the insert on a thread
(``run_in_executor``, as the receiver does), with pymongo's native asyncio client, and, to
split the cost, without the write.

Each receiver runs in its own process, takes N signed ``user.created`` deliveries at
concurrency C over loopback (after 100 to warm up) on the same database server, in turns,
``--repeats`` times; printed: each one's CPU per delivery (its process's user + system time
over the run / N) and deliveries per second; then what one pymongo command costs the
client's CPU, one at a time. `clerksync serve` runs as users run it: a Clerk key set (a fake
Clerk at a development limit, so the write-back workers run) and the app's unique email and
username indexes in place; ``--no-key`` also runs it without a key.

    python bench/stack_floor.py [-n 1500] [-c 16] [--repeats 2] [--no-key]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BARE_MODE = os.environ.get("STACK_FLOOR_MODE")  # set in the bare receiver's process only


def bare_app() -> Any:
    """The bare receiver's ASGI app (see the module docstring)."""
    import orjson
    from pymongo import AsyncMongoClient, MongoClient, WriteConcern
    from svix.webhooks import Webhook

    webhook = Webhook(os.environ["WEBHOOK_SECRET"])
    concern = WriteConcern(w="majority", j=True)
    client: Any = (AsyncMongoClient if BARE_MODE == "async" else MongoClient)(
        os.environ["MONGODB_URL"]
    )
    users = client["bare"].get_collection("users", write_concern=concern)
    answer = b'{"outcome":"applied"}'

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        webhook.verify(body, {k.decode(): v.decode() for k, v in scope["headers"]})
        data = orjson.loads(body)["data"]
        doc = {
            "clerkId": data["id"],
            "email": data["email_addresses"][0]["email_address"],
            "firstName": data.get("first_name"),
            "updatedAt": data["updated_at"],
        }
        if BARE_MODE == "no write":
            pass
        elif BARE_MODE == "async":
            await users.insert_one(doc)
        else:
            await asyncio.get_running_loop().run_in_executor(None, users.insert_one, doc)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"21")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return app


if BARE_MODE:
    app = bare_app()


def main() -> None:
    from harness import free_port, start_database, stop, wait_port
    from profile_serve import deliverer
    from pymongo import MongoClient
    from serve_bench import FAKE_KEY, app_indexes, cpu_times, timed_pool

    from clerksync.clerk.webhooks import new_secret, sign
    from clerksync.devtools.payloads import clerk_user, event

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1500)
    parser.add_argument("-c", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-key", action="store_true", help="also clerksync without a key")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="clerksync-floor-")
    db, url = start_database(f"{tmp}/db")
    procs: list[Any] = [db]
    secret = new_secret()
    here = Path(__file__).resolve().parent
    runs = ["bare, thread", "bare, async", "bare, no write", "clerksync serve, key"]
    runs += ["clerksync serve, no key"] if args.no_key else []
    users = {  # (run, receiver) -> warm-up users, measured users; all in the fake Clerk
        (rep, n): (
            [
                clerk_user(email=f"w{rep}_{n}_{i}@x.com", username=f"w{rep}_{n}_{i}")
                for i in range(100)
            ],
            [
                clerk_user(email=f"r{rep}_{n}_{i}@x.com", username=f"r{rep}_{n}_{i}")
                for i in range(args.n)
            ],
        )
        for rep in range(args.repeats)
        for n in range(len(runs))
    }
    users_file = Path(tmp) / "users.json"
    users_file.write_text(json.dumps([u for pair in users.values() for u in pair[0] + pair[1]]))
    try:
        MongoClient(url)["bare"]["users"].create_index("clerkId", unique=True)
        fake = subprocess.Popen(
            [sys.executable, str(here / "serve_bench.py"), "--serve-fake", str(users_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(fake)
        assert fake.stdout is not None
        api = fake.stdout.readline().strip()
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for rep in range(args.repeats):
            for n, name in enumerate(runs):
                port = free_port()
                env = {**os.environ, "MONGODB_URL": url, "WEBHOOK_SECRET": secret}
                env.pop("CLERK_SECRET_KEY", None)
                if name.startswith("bare"):
                    env["STACK_FLOOR_MODE"] = name.split(", ")[1]
                    command = ["-m", "uvicorn", "stack_floor:app", "--port", str(port)]
                    command += ["--log-level", "warning", "--no-access-log"]
                    command += ["--loop", "uvloop", "--http", "httptools"]
                else:
                    database = f"serve{rep}_{n}"
                    env["MONGODB_DB"] = database
                    if name.endswith(", key"):
                        env.update({"CLERK_SECRET_KEY": FAKE_KEY, "CLERK_API_URL": api})
                    app_indexes(MongoClient(url)[database]["users"])
                    command = ["-m", "clerksync", "serve", "--port", str(port)]
                proc = subprocess.Popen(
                    [sys.executable, *command],
                    env=env,
                    cwd=here if name.startswith("bare") else tmp,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                procs.append(proc)
                wait_port(port)
                deliver = deliverer(port)

                def signed(chunk: list[dict[str, Any]]) -> list[Any]:
                    bodies = [json.dumps(event("user.created", u)).encode() for u in chunk]
                    return [(body, sign(secret, body), []) for body in bodies]

                warm, measured = users[rep, n]
                timed_pool(deliver, signed(warm), args.c)
                items = signed(measured)
                user0, system0 = cpu_times(proc.pid)
                elapsed = timed_pool(deliver, items, args.c)
                user1, system1 = cpu_times(proc.pid)
                cpu_ms = (user1 - user0 + system1 - system0) / args.n * 1000
                figures[name].append((cpu_ms, args.n / elapsed))
                print(f"  {name}: {cpu_ms:.2f} ms CPU per delivery, {args.n / elapsed:.0f}/s")
                proc.terminate()
                proc.wait()
                procs.remove(proc)
        one = command_cpu(url)
        print(f"{args.n} user.created at concurrency {args.c}, {args.repeats} runs each (median):")
        floor = statistics.median(f[0] for f in figures["bare, thread"])
        for name, runs_of in figures.items():
            cpu = statistics.median(f[0] for f in runs_of)
            rate = statistics.median(f[1] for f in runs_of)
            print(
                f"  {name:26s} {cpu:.2f} ms CPU per delivery ({cpu / floor:.2f}x bare, thread)"
                f", {rate:.0f}/s"
            )
        print(
            "  one pymongo command, one thread, costs this process "
            + ", ".join(f"{what} {ms:.2f} ms" for what, ms in one.items())
            + " of CPU"
        )
    finally:
        stop(procs)


def command_cpu(url: str, n: int = 2000) -> dict[str, float]:
    """This process's CPU per pymongo command, one at a time: a ``ping``, and an
    ``insert_one`` as the bare receiver's (``w="majority", j=True``)."""
    import resource

    from pymongo import MongoClient, WriteConcern

    client: Any = MongoClient(url)
    users = client["bare"].get_collection("cpu", write_concern=WriteConcern(w="majority", j=True))
    calls = {"ping": lambda i: client.admin.command("ping"), "insert_one": users.insert_one}
    found = {}
    for what, call in calls.items():
        for i in range(100):
            call({"warm": i} if what == "insert_one" else i)
        before = resource.getrusage(resource.RUSAGE_SELF)
        for i in range(n):
            call({"clerkId": f"user_{i}", "email": f"{i}@x.com"} if what == "insert_one" else i)
        after = resource.getrusage(resource.RUSAGE_SELF)
        spent = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        found[what] = spent / n * 1000
    client.close()
    return found


if __name__ == "__main__" and not BARE_MODE:
    main()
