"""``clerksync serve``'s start-up as an operator meets it (finding 10), real processes.

With ``--log-json`` every line is JSON, the start-up errors too (a bad option among them);
a ``whsec_…=`` secret with its base64 padding (svix takes it) is taken; a malformed setting
names the place it was read from, not a ``.env.local`` that may not exist; and a new dev
secret is printed whole once, ``--log-json`` or not.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clerksync.devtools.payloads import clerk_user, event
from tests.conftest import OUR_VARS, free_port
from tests.support.receiver import post

CLI = [sys.executable, "-m", "clerksync"]
#: a 32-byte key: its base64 ends in one '=' (Clerk's are 24 bytes and have none)
PADDED = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def environment(home: Path, **more: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in OUR_VARS}
    return {**clean, "CLERKSYNC_HOME": str(home), **more}


def json_lines(stderr: str) -> list[dict]:
    lines = stderr.splitlines()
    assert lines, "nothing on stderr"
    return [json.loads(line) for line in lines]  # every line parses


def start(args: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", *args, "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, port


def wait_until_up(proc: subprocess.Popen[str], port: int) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "serve did not start"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=30)[1]


@pytest.mark.parametrize(
    ("args", "more", "code", "says"),
    [
        ([], {"WEBHOOK_SECRET": "whsec_%%%"}, 2, "Fix it in the process environment"),
        (["--port", "abc"], {}, 2, "Invalid value for '--port'"),
        (["--bogus"], {}, 2, "No such option: --bogus"),
        (["--rotate-secret"], {}, 2, "--rotate-secret goes with --dev"),
    ],
)
def test_log_json_start_up_errors_are_json_lines(
    db_env: dict[str, str], tmp_path: Path, args: list[str], more: dict, code: int, says: str
) -> None:
    env = environment(tmp_path / "home", **db_env, WEBHOOK_SECRET=PADDED)
    env.update(more)
    done = subprocess.run(
        [*CLI, "serve", "--log-json", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == code, done.stderr
    entries = json_lines(done.stderr)
    assert len(entries) == 1 and entries[0]["level"] == "error", entries
    assert says in entries[0]["message"], entries


def test_a_malformed_secret_names_the_file_it_was_read_from(cli, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("WEBHOOK_SECRET=whsec_%%%\n")
    result = cli("serve")
    assert result.exit_code == 2
    assert "base64" in result.stderr and "Fix it in .env: " in result.stderr, result.stderr
    assert ".env.local" not in result.stderr and not (tmp_path / ".env.local").exists()


def test_a_padded_secret_is_taken_and_its_deliveries_verify(
    db_env: dict[str, str], tmp_path: Path
) -> None:
    env = environment(tmp_path / "home", **db_env, WEBHOOK_SECRET=PADDED)
    proc, port = start(["--log-json"], env, tmp_path)
    try:
        wait_until_up(proc, port)
        url = f"http://127.0.0.1:{port}/api/webhooks/clerk"
        answer = post(url, PADDED, event("user.created", clerk_user(user_id="user_padded")))
        assert answer.status_code == 200 and answer.json()["outcome"] == "applied"
    finally:
        err = stop(proc)
    entries = json_lines(err)
    assert not any(PADDED in json.dumps(e) for e in entries)  # not a dev secret: masked


def test_a_new_dev_secret_is_printed_whole_once_with_log_json_too(
    db_env: dict[str, str], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = environment(home, **db_env)
    seen = []
    for _ in range(2):
        proc, port = start(["--dev", "--log-json"], env, tmp_path)
        try:
            wait_until_up(proc, port)
        finally:
            err = stop(proc)
        entries = json_lines(err)
        seen.append(" ".join(e.get("message", "") for e in entries))
    secret = json.loads((home / "dev-secret.json").read_text())["secret"]
    assert secret in seen[0]  # new: whole, to be copied
    assert secret not in seen[1] and "signing secret is whsec_" in seen[1]  # kept: masked
