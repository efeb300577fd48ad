"""MongoDB-shell lines as ``doctor`` prints them, run as printed (``node/mongoshell.js``,
the Node driver mongoose ships): the fixes' tests follow the fix exactly, no mongosh needed.

``tests/support/node`` has its packages installed by ``make test`` (``npm ci``); a test
that needs them fails, never skips, when they are missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

NODE_DIR = Path(__file__).parent / "node"


def node() -> str:
    found = shutil.which("node")
    assert found, "node is not on PATH: the app tests drive mongoose through Node"
    assert (NODE_DIR / "node_modules" / "mongoose").is_dir(), (
        "tests/support/node has no node_modules: run `make test` (it runs npm ci there)"
    )
    return found


def run_shell_lines(url: str, database: str, lines: list[str]) -> str:
    """Run each ``db.…`` line against ``database``; AssertionError with the error if one fails."""
    done = subprocess.run(
        [node(), str(NODE_DIR / "mongoshell.js"), url, database],
        input="\n".join(lines),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{lines}: {done.stderr}"
    return done.stdout
