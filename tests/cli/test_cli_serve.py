"""`clerksync serve` refusing to start: one line, the documented code, nothing touched.

(Starting for real, twice, is walked in test_quickstart.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clerksync.errors import ConfigError
from clerksync.settings import load_settings


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("CLERKSYNC_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_port_in_use_fails_before_announcing_and_touches_nothing(
    cli, db_env, home: Path, busy_port: int
) -> None:
    home.mkdir()
    running = {"url": "http://127.0.0.1:1/api/webhooks/clerk", "pid": 1, "dev": True}
    (home / "serve.json").write_text(json.dumps(running))
    (home / "dev-secret.json").write_text(json.dumps({"secret": "whsec_" + "QUJDRA" * 6}))
    before = {p.name: p.read_bytes() for p in home.iterdir()}
    result = cli("serve", "--dev", "--port", str(busy_port))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "already in use" in result.stderr and "Receiving on" not in result.stderr
    assert {p.name: p.read_bytes() for p in home.iterdir()} == before


@pytest.mark.parametrize("host", ["999.1.1.1", "no-such-host.invalid", "8.8.8.8"])
def test_bad_host_is_a_usage_error(cli, db_env, home: Path, host: str) -> None:
    result = cli("serve", "--dev", "--host", host, "--port", "8112")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "--host" in result.stderr
    assert not home.exists() or not list(home.iterdir())  # no secret, no serve.json


def test_rotate_secret_needs_dev(cli, db_env, home: Path) -> None:
    result = cli("serve", "--rotate-secret")
    assert result.exit_code == 2 and "--dev" in result.stderr


def test_a_mounted_receiver_refuses_the_embedded_store(tmp_path: Path) -> None:
    from clerksync.receiver.asgi import create_app

    settings = load_settings(environ={"WEBHOOK_SECRET": "whsec_" + "QUJDRA" * 6}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="MONGODB_URL is not set"):
        create_app(settings)
    assert not (tmp_path / ".clerksync").exists()  # no embedded store was started
