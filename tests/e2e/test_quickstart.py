"""The README's quick start and developer loop, run as a new user runs them: real processes.

`clerksync serve --dev` on the embedded store (no MongoDB, no Clerk account), then
`send`, `users list`, `events list`, `doctor` from other processes; and the same
with the demo started twice, which must fail cleanly and leave the first one working.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from clerksync.settings import mask
from clerksync.store.embedded import stop_server
from tests.conftest import OUR_VARS, free_port

CLI = [sys.executable, "-m", "clerksync"]


class Demo:
    """`clerksync serve --dev --port N` in its own process, with CLERKSYNC_HOME in a tmp dir."""

    def __init__(self, home: Path, cwd: Path) -> None:
        self.home = home
        self.cwd = cwd
        self.port = free_port()
        clean = {k: v for k, v in os.environ.items() if k not in OUR_VARS}  # as on a clean machine
        self.env = {**clean, "CLERKSYNC_HOME": str(home), "COLUMNS": "80"}

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self) -> subprocess.Popen[str]:
        self.proc = subprocess.Popen(
            [*CLI, "serve", "--dev", "--port", str(self.port)],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).is_success:
                    return self.proc
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("the demo did not start")

    def stop(self, sig: int = signal.SIGINT) -> str:
        """Ctrl-C, as a person stops it (or ``sig``); returns what it said on stderr."""
        self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """One demo for the module (the embedded store takes seconds to start); tests run in order."""
    folder = tmp_path_factory.mktemp("demo")
    running = Demo(folder / "home", folder)
    running.start()
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.stop()
        stop_server(running.home)


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr


def test_quick_start_and_developer_loop(demo: Demo) -> None:
    sent = demo.run("send", "user.created", "--email", "grace@example.com", "--first-name", "Grace")
    assert sent.returncode == 0, sent.stderr
    assert "200 applied" in sent.stderr

    users = demo.run("users", "list")
    assert users.returncode == 0, users.stderr
    assert "grace@example.com" in users.stdout and "1 user " in users.stdout
    # the notice is one line, not hard-wrapped mid-path at 80 columns
    assert users.stderr.count("\n") == 1 and "using the embedded store in" in users.stderr

    events = demo.run("events", "list", "--json")
    assert events.returncode == 0, events.stderr
    rows = json.loads(events.stdout)
    assert [r["outcome"] for r in rows] == ["applied"]

    doctor = demo.run("doctor", "--json")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["WEBHOOK_SECRET"]["status"] == "pass"  # the running demo's secret
    receiver = checks[f"receiver http://127.0.0.1:{demo.port}/api/webhooks/clerk"]
    assert receiver["status"] == "pass"
    assert not [c for c in checks.values() if c["status"] == "fail"]

    # doctor's probes are not deliveries
    stats = json.loads(demo.run("events", "stats", "--json").stdout)
    assert stats["total"] == 1 and stats["outcomes"] == {"applied": {"count": 1, "rate": 1.0}}
    for result in (sent, users, events, doctor):
        no_traceback(result)


def test_demo_started_twice_fails_cleanly_and_the_first_keeps_working(demo: Demo) -> None:
    files = {p.name: p.read_bytes() for p in demo.home.iterdir() if p.suffix == ".json"}
    second = demo.run("serve", "--dev", "--port", str(demo.port), timeout=60)
    assert second.returncode == 1
    assert second.stderr.strip().count("\n") == 0, second.stderr  # one line
    assert "already in use" in second.stderr and "--port" in second.stderr
    assert "Receiving on" not in second.stderr
    no_traceback(second)
    after = {p.name: p.read_bytes() for p in demo.home.iterdir() if p.suffix == ".json"}
    assert after == files  # the running demo's secret and serve.json are untouched

    sent = demo.run("send", "user.created", "--email", "still@example.com")
    assert sent.returncode == 0, sent.stderr


def test_inspect_shows_the_demos_deliveries_on_the_embedded_store(demo: Demo) -> None:
    """`clerksync inspect` beside the demo, as the README runs it: its own process and port,
    the embedded store found as every command finds it, new deliveries listed."""
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "inspect", "--port", str(port)],
        env=demo.env,
        cwd=demo.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                page = httpx.get(base + "/", timeout=5)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert page.status_code == 200 and "Deliveries" in page.text
        listed = re.findall(r'data-id="([^"]+)"', page.text)
        sent = demo.run("send", "user.created", "--email", "seen@example.com")
        assert sent.returncode == 0, sent.stderr
        while len(now := re.findall(r'data-id="([^"]+)"', httpx.get(base + "/rows").text)) == len(
            listed
        ):
            assert time.monotonic() < deadline, "the delivery never showed"
            time.sleep(0.2)
        assert "seen@example.com" not in httpx.get(base + "/").text  # no email in the list
        assert "seen@example.com" in httpx.get(f"{base}/deliveries/{now[0]}", timeout=5).text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, said = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, said = proc.communicate()
    assert f"Inspector on {base}/" in said and "Traceback" not in said


def test_dev_secret_is_kept_across_restarts_until_rotated(demo: Demo) -> None:
    secret = json.loads((demo.home / "dev-secret.json").read_text())["secret"]
    assert oct((demo.home / "dev-secret.json").stat().st_mode & 0o777) == "0o600"
    assert oct((demo.home / "serve.json").stat().st_mode & 0o777) == "0o600"
    said = demo.stop()
    assert secret in said  # made on this start: shown in full, once
    assert not (demo.home / "serve.json").exists()  # removed on a clean stop by its writer
    assert "embedded store stops by itself" in said
    stopped = json.loads(demo.run("doctor", "--json").stdout)["checks"]
    secret_check = next(c for c in stopped if c["name"] == "WEBHOOK_SECRET")
    assert secret_check["status"] == "info" and "not running now" in secret_check["detail"]

    demo.start()
    assert json.loads((demo.home / "dev-secret.json").read_text())["secret"] == secret
    assert demo.run("send", "user.created").returncode == 0
    again = demo.stop()
    assert secret not in again  # kept: masked, with where it is kept
    assert mask(secret) in again and "dev-secret.json" in again

    demo.proc = subprocess.Popen(
        [*CLI, "serve", "--dev", "--rotate-secret", "--port", str(demo.port)],
        env=demo.env,
        cwd=demo.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (demo.home / "serve.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    rotated = json.loads((demo.home / "dev-secret.json").read_text())["secret"]
    assert rotated != secret
    assert rotated in demo.stop()  # renewed: shown in full


def test_a_terminated_demo_cleans_up_as_a_stopped_one(demo: Demo) -> None:
    """``kill``, systemd and ``docker stop`` send SIGTERM: the same clean stop as Ctrl-C."""
    if demo.proc.poll() is not None:
        demo.start()
    assert (demo.home / "serve.json").exists()
    said = demo.stop(signal.SIGTERM)
    assert demo.proc.returncode == 128 + signal.SIGTERM, said
    assert not (demo.home / "serve.json").exists()
    assert "Stopped." in said
