"""Every command against a malformed value of every variable: one line, the documented code.

A command stops (exit 2, one line naming the variable) only for a variable it
reads; any other command runs as it would with that variable unset. Never a
traceback. Also: "did you mean", `--env-file` after the subcommand.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import WEBHOOK_SECRET
from tests.support.fakeclerk import FakeClerk

MALFORMED = {
    "MONGODB_URL": "mongodb://db.example:99999/app",
    "MONGODB_DB": "my app.db",
    "CLERK_SECRET_KEY": "sk_live_garbage",
    "CLERK_API_URL": "api.clerk.com/v1",
    "WEBHOOK_SECRET": "whsec_replace_me",
    "NEXT_PUBLIC_URL": "example.com",
    "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY": "pk_bogus",
    "CLERKSYNC_PAYLOAD_TTL_DAYS": "a week",
    "CLERKSYNC_MONGO_TIMEOUT_MS": "inf",
    "CLERKSYNC_HOME": "<a file>",
    "CLERKSYNC_SCHEMA": "no-such-preset",
    "CLERKSYNC_EMBEDDED_IDLE_SECONDS": "soon",
    "CLERK_JWT_KEY": "https://example.clerk.accounts.dev/.well-known/jwks.json",
    "CLERK_AUTHORIZED_PARTIES": "https://example.com/app",
}
#: read when settings load, so every command stops on them
EAGER = {
    "CLERKSYNC_PAYLOAD_TTL_DAYS",
    "CLERKSYNC_MONGO_TIMEOUT_MS",
    "CLERKSYNC_HOME",
    "CLERKSYNC_SCHEMA",
    "CLERKSYNC_EMBEDDED_IDLE_SECONDS",
}
STORE = {"MONGODB_URL", "MONGODB_DB"}
CLERK = {"CLERK_SECRET_KEY", "CLERK_API_URL"}

#: command line -> the variables it reads (besides the eager ones)
COMMANDS: dict[tuple[str, ...], set[str]] = {
    ("users", "list"): STORE,
    ("users", "show", "nobody@example.com"): STORE,
    ("sync-metadata",): STORE | CLERK,
    ("promote", "nobody@example.com"): STORE | CLERK,
    ("demote", "nobody@example.com"): STORE | CLERK,
    ("reconcile",): STORE | CLERK,
    ("serve", "--port", "<busy>"): STORE | CLERK | {"WEBHOOK_SECRET"},
    ("serve", "--port", "<busy>", "--users-me"): STORE
    | CLERK
    | {"WEBHOOK_SECRET", "CLERK_JWT_KEY", "CLERK_AUTHORIZED_PARTIES"},
    ("send", "user.created"): {"WEBHOOK_SECRET", "NEXT_PUBLIC_URL"},
    ("events", "list"): STORE,
    ("events", "show", "msg_none"): STORE,
    ("events", "stats"): STORE,
    ("events", "tail"): STORE,
    ("events", "replay", "msg_none"): STORE,
}


@pytest.fixture
def good_env(
    db_env: dict[str, str], fake_clerk: FakeClerk, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> dict[str, str]:
    env = {
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "NEXT_PUBLIC_URL": "http://127.0.0.1:9",  # valid, and nothing answers there
        "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY": "pk_test_Y2xlcmsuZXhhbXBsZS5jb20k",
        "CLERKSYNC_HOME": str(tmp_path / "state"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def run(cli, args: tuple[str, ...], port: int):
    return cli(*(str(port) if a == "<busy>" else a for a in args))


def set_malformed(monkeypatch: pytest.MonkeyPatch, name: str, tmp_path: Path) -> str:
    value = MALFORMED[name]
    if value == "<a file>":
        value = str(tmp_path / "a-file")
        Path(value).write_text("not a folder")
    monkeypatch.setenv(name, value)
    return value


@pytest.mark.parametrize("name", list(MALFORMED))
def test_every_command_with_a_malformed_variable(
    cli, good_env, busy_port: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    baseline = {args: run(cli, args, busy_port).exit_code for args in COMMANDS}
    assert baseline[("users", "list")] == 0 and baseline[("serve", "--port", "<busy>")] == 1
    set_malformed(monkeypatch, name, tmp_path)
    for args, reads in COMMANDS.items():
        result = run(cli, args, busy_port)
        said = result.stderr.strip()
        assert "Traceback" not in result.stdout + result.stderr, args
        if name in EAGER or name in reads:
            assert result.exit_code == 2, (args, result.stderr)
            assert said.count("\n") == 0 and said.startswith("Error: "), (args, said)
            assert name in said, (args, said)
        else:
            assert result.exit_code == baseline[args], (args, result.stderr)
            assert name not in said, (args, said)


@pytest.mark.parametrize("name", sorted(set(MALFORMED) - EAGER))
def test_doctor_reports_a_malformed_variable_as_a_failing_check(
    cli, good_env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    value = set_malformed(monkeypatch, name, tmp_path)
    result = cli("doctor", "--json")
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks[name]["status"] == "fail", checks
    if name in ("WEBHOOK_SECRET", "CLERK_SECRET_KEY"):
        assert value not in result.stdout  # secrets stay masked, even broken ones


@pytest.mark.parametrize("name", sorted(EAGER))
def test_doctor_stops_on_a_malformed_tuning_variable(
    cli, good_env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    set_malformed(monkeypatch, name, tmp_path)
    result = cli("doctor")
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and name in result.stderr


def test_help_works_whatever_the_settings(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLERKSYNC_PAYLOAD_TTL_DAYS", "a week")
    assert cli("users", "list", "--help").exit_code == 0


def test_did_you_mean_for_a_mistyped_name(cli, db_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    (Path.cwd() / ".env.local").write_text("CLERK_API_KEY=sk_test_abc\nWEBHOK_SECRET=x\n")
    result = cli("users", "list", "--json")
    assert result.exit_code == 0 and result.stderr.count("\n") == 2  # one line each
    assert "CLERK_API_KEY is set, but clerksync reads CLERK_SECRET_KEY" in result.stderr
    assert "did you mean WEBHOOK_SECRET?" in result.stderr
    checks = {c["name"]: c for c in json.loads(cli("doctor", "--json").stdout)["checks"]}
    assert checks["CLERK_API_KEY"]["status"] == "warn"
    assert "CLERK_SECRET_KEY" in checks["CLERK_API_KEY"]["hint"]


def test_an_unknown_option_is_offered_only_close_options(cli) -> None:
    """``send --phone`` was offered ``--help, --json`` (click's loose "Possible options")."""
    phone = cli("send", "user.created", "--phone", "+15550100")
    assert phone.exit_code == 2
    assert "--help, --json" not in phone.stderr and "Possible options" not in phone.stderr
    said = " ".join(phone.stderr.split())
    assert "No such option: --phone. `clerksync send` takes --data, --email," in said
    typo = cli("send", "user.created", "--emial", "a@b.co")
    assert typo.exit_code == 2 and "(Possible options: --email)" in typo.stderr
    assert "(Possible options: --json)" in cli("users", "list", "--jsno").stderr


def test_no_did_you_mean_when_the_real_name_is_set(
    cli, db_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONGO_URL", "mongodb://elsewhere/x")  # MONGODB_URL is set by db_env
    assert "did you mean" not in cli("users", "list").stderr


def test_env_file_after_the_subcommand(cli, db_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONGODB_DB")
    other = Path.cwd() / "prod.env"
    other.write_text(f"MONGODB_DB={db_env['MONGODB_DB']}_other\n")
    for args in (
        ("users", "list", "--env-file", str(other)),
        ("users", "list", f"--env-file={other}"),
        ("--env-file", str(other), "users", "list"),
    ):
        result = cli(*args)
        assert result.exit_code == 0, result.stderr
        assert f"{db_env['MONGODB_DB']}_other" in result.stdout
    missing = cli("events", "list", "--env-file", "nope.env")
    assert missing.exit_code == 2 and "nope.env: no such file" in missing.stderr


def test_secret_key_with_the_right_prefix_is_told_what_is_wrong(cli, db_env, monkeypatch) -> None:
    monkeypatch.setenv("CLERK_SECRET_KEY", "sk_live_garbage")
    result = cli("reconcile")
    assert result.exit_code == 2
    assert "must start with" not in result.stderr and "was it cut" in result.stderr


def test_serve_users_me_needs_the_secret_key(cli, db_env, monkeypatch) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", WEBHOOK_SECRET)
    result = cli("serve", "--port", "1", "--users-me")
    assert result.exit_code == 2
    assert "CLERK_SECRET_KEY is not set" in result.stderr and "--users-me" in result.stderr


def test_serve_without_a_secret_mentions_dev(cli, db_env) -> None:
    result = cli("serve", "--port", "1")
    assert result.exit_code == 2
    assert "WEBHOOK_SECRET is not set" in result.stderr and "serve --dev" in result.stderr


def test_env_example_copied_as_is_changes_nothing(cli, db_env) -> None:
    example = Path(__file__).resolve().parents[2] / ".env.example"
    (Path.cwd() / ".env.local").write_text(example.read_text())
    result = cli("users", "list")
    assert result.exit_code == 0 and result.stderr == ""
    assert all(f"# {name}=" in example.read_text() for name in MALFORMED)


@pytest.mark.parametrize(
    "url",
    [
        "mongodb://u:hunter2@[::1:8078/db",  # pymongo: plain ValueError
        "mongodb+srv://u:hunter2@one.example,two.example/db",  # ConfigurationError
    ],
)
def test_a_url_pymongo_cannot_parse_is_a_config_error(
    cli, good_env, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("MONGODB_URL", url)
    result = cli("users", "list")
    assert result.exit_code == 2, result.stderr
    said = result.stderr.strip()
    assert said.count("\n") == 0 and "MONGODB_URL" in said and "unexpected" not in said
    assert "hunter2" not in said
    checks = {c["name"]: c for c in json.loads(cli("doctor", "--json").stdout)["checks"]}
    assert checks["MongoDB"]["status"] == "fail"
    assert "not a usable connection string" in checks["MongoDB"]["detail"]
    assert "hunter2" not in json.dumps(checks)


def test_a_url_with_a_space_is_a_config_error_not_a_timeout(
    cli, good_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pymongo takes ``a b`` for a host name and waits for it: a malformed variable (2)."""
    monkeypatch.setenv("MONGODB_URL", "mongodb://u:hunter2@db.example/app ?w=majority")
    result = cli("users", "list")
    assert result.exit_code == 2, result.stderr
    assert "space" in result.stderr and "hunter2" not in result.stderr


def test_an_option_pymongo_does_not_know_is_named_in_one_line(
    good_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pymongo's warning names no option and comes with a source line; ours names it (the
    Next.js app shares the URL, so an option only its driver reads is not an error)."""
    import os
    import subprocess
    import sys

    url = os.environ["MONGODB_URL"]
    monkeypatch.setenv("MONGODB_URL", url + ("&" if "?" in url else "?") + "retryWrite=true")
    # a process of its own: what a terminal shows (pytest's log capture is not in the way)
    done = subprocess.run(
        [sys.executable, "-m", "clerksync", "users", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines() == [
        "MONGODB_URL: pymongo ignores retryWrite (not an option it knows: a typo, or one only "
        "your app's driver reads)"
    ]


def test_replay_says_since_goes_with_failed(cli, good_env) -> None:
    result = cli("events", "replay", "--since", "1h")
    assert result.exit_code == 2
    assert "--since narrows --failed" in result.stderr and "--failed --since 1h" in result.stderr
