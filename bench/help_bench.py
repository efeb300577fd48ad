"""Wall time of `clerksync --help` as a ratio to `python -c "import typer"`, same run.

`--help` must stay fast: pymongo, the Clerk SDK and svix are imported only
inside the commands that need them. Goal: ratio <= 1.5.

    python bench/help_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def once(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=25)
    args = parser.parse_args()
    base_cmd = [sys.executable, "-c", "import typer"]
    help_cmd = [sys.executable, "-m", "clerksync", "--help"]
    once(base_cmd), once(help_cmd)  # warm the OS caches
    # Interleaved, one of each in turn: the machine's load drifts over seconds, and timing
    # all of one command, then all of the other, put that drift into the ratio.
    baseline, helped = [], []
    for _ in range(args.runs):
        baseline.append(once(base_cmd))
        helped.append(once(help_cmd))
    base, ours = statistics.median(baseline), statistics.median(helped)
    print(f"python -c 'import typer': median {base * 1000:.0f} ms over {args.runs} runs")
    print(f"clerksync --help:         median {ours * 1000:.0f} ms over {args.runs} runs")
    print(f"ratio: {ours / base:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
