"""How soon ``/readyz`` says 200 again once the database is back, and that ``/livez`` never
stopped saying it.

Starts a SecantusDB server in its own process and ``clerksync serve`` against it, then, a
few times over: stops the database (the process ends), checks ``/livez`` is 200 and
``/readyz`` 503 with its reason, starts the database again on the same port and storage,
and polls ``/readyz`` every 20 ms from the moment the database listens. Prints each
recovery, the median and the worst, with the machine's load.

    python bench/probe_bench.py [--cycles 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
from harness import free_port, stop, teardown, wait_port

from clerksync.clerk.webhooks import new_secret


def database(storage: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "secantus", "--port", str(port), "--storage-path", storage]
        + ["--log-level", "ERROR"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=5)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="clerksync-probes-")
    procs: list[subprocess.Popen[bytes]] = []  # the receiver
    db: subprocess.Popen[bytes] | None = None
    try:
        db_port, port = free_port(), free_port()
        db = database(f"{tmp}/db", db_port)
        env = {
            **os.environ,
            "MONGODB_URL": f"mongodb://127.0.0.1:{db_port}/?directConnection=true",
            "MONGODB_DB": "probes",
            "WEBHOOK_SECRET": new_secret(),
        }
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
        base = f"http://127.0.0.1:{port}"
        while httpx.get(base + "/readyz", timeout=5).status_code != 200:
            time.sleep(0.05)
        recoveries = []
        for cycle in range(args.cycles):
            stop([db])
            live = httpx.get(base + "/livez", timeout=5).status_code
            ready = httpx.get(base + "/readyz", timeout=5)
            db = database(f"{tmp}/db", db_port)
            back = time.perf_counter()
            polls = 0
            while httpx.get(base + "/readyz", timeout=5).status_code != 200:
                polls += 1
                time.sleep(0.02)
            recoveries.append(time.perf_counter() - back)
            print(
                f"cycle {cycle + 1}: database stopped: /livez {live}, /readyz "
                f"{ready.status_code} ({ready.json().get('reason')}); back: /readyz 200 after "
                f"{recoveries[-1]:.2f} s ({polls} polls answered 503)"
            )
        print(
            f"/readyz back to 200 after the database listens: median "
            f"{statistics.median(recoveries):.2f} s, worst {max(recoveries):.2f} s over "
            f"{args.cycles} cycles; load " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
        )
    finally:
        stop(procs)  # the receiver before the database it writes to
        teardown([db] if db is not None else [], tmp)


if __name__ == "__main__":
    main()
