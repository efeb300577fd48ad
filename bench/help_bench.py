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


def timed(cmd: list[str], runs: int) -> list[float]:
    subprocess.run(cmd, check=True, capture_output=True)  # warm the OS caches
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    baseline = timed([sys.executable, "-c", "import typer"], args.runs)
    helped = timed([sys.executable, "-m", "clerksync", "--help"], args.runs)
    base, ours = statistics.median(baseline), statistics.median(helped)
    print(f"python -c 'import typer': median {base * 1000:.0f} ms over {args.runs} runs")
    print(f"clerksync --help:         median {ours * 1000:.0f} ms over {args.runs} runs")
    print(f"ratio: {ours / base:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
