"""What the CLI prints: tables that fit 80 columns, data as text, odd input as one line.

Cells come from Clerk and from anyone who can reach the receiver (a rejected
delivery's svix-id is whatever the sender wrote): they print as themselves,
never as Rich markup, and control characters are shown escaped.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import httpx
import pytest

from clerksync.devtools.payloads import clerk_user
from clerksync.kinds.user import USER, parse_clerk_user
from clerksync.store.database import Store
from tests.support.writes import upsert

HOSTILE = ["[/]", "[red]x[/red]", "\x1b]0;pwned\x07", "\x1b[2J", "[bold"]


def add_user(store: Store, user_id: str, **fields: str | None) -> None:
    upsert(store, USER, parse_clerk_user(clerk_user(user_id=user_id, **fields)))  # type: ignore[arg-type]


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_users_list_fits_80_columns_ids_and_emails_whole(cli, store: Store, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    for i in range(3):
        add_user(
            store,
            f"user_2g7np7Hrk0SN6kj5EDMLDaK{i:03d}",
            email=f"someone.with.a.long.address{i}@example-company.com",
            first_name="Alexandrina Victoria",
            last_name="Saxe-Coburg and Gotha",
            username=f"a_rather_long_username_{i}",
        )
    result = cli("users", "list")
    assert result.exit_code == 0, result.stderr
    lines = table_lines(result.stdout)
    assert lines[0].startswith("3 users ")  # title, heading, rule, then the users
    assert all(len(line) <= 80 for line in lines)
    for i in range(3):  # the id and the email a person copies are never cut (they wrap)
        assert f"user_2g7np7Hrk0SN6kj5EDMLDaK{i:03d}" in result.stdout
        assert f"someone.with.a.long.address{i}@example-company.com" in "".join(
            result.stdout.split()
        )


def test_users_list_into_a_pipe_keeps_whole_cells(cli, store: Store, monkeypatch) -> None:
    """No terminal and no COLUMNS (``| grep``): nothing is cut to 80 columns."""
    monkeypatch.delenv("COLUMNS", raising=False)
    email = "someone.with.a.very.long.address.indeed@example-company.com"
    add_user(store, "user_piped", email=email, first_name="Alexandrina Victoria")
    result = cli("users", "list")
    assert result.exit_code == 0, result.stderr
    assert email in result.stdout and "Alexandrina Victoria" in result.stdout


def test_events_list_fits_80_columns(cli, receiver, monkeypatch) -> None:
    from tests.conftest import WEBHOOK_SECRET
    from tests.support.receiver import post

    monkeypatch.setenv("COLUMNS", "80")
    for i, kind in enumerate(["user.created", "organizationMembership.created", "session.created"]):
        data = clerk_user(user_id=f"user_cols{i}") if kind == "user.created" else {"id": "x"}
        post(receiver.url, WEBHOOK_SECRET, {"type": kind, "data": data}, msg_id=f"msg_cols{i}")
    httpx.post(receiver.url, content=b"{}", headers={"svix-id": "msg_cols_rejected"})
    receiver.receiver.log.flush_now()
    result = cli("events", "list")
    lines = table_lines(result.stdout)
    assert lines[0].strip() == "4 deliveries" and len(lines) == 3 + 4
    assert all(len(line) <= 80 for line in lines)
    assert "msg_cols_rejected" in result.stdout and "rejected" in result.stdout


def test_plurals(cli, store: Store) -> None:
    add_user(store, "user_only")
    assert table_lines(cli("users", "list").stdout)[0].startswith("1 user in")
    assert cli("events", "stats").stdout.startswith("0 deliveries")


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_print_as_text(cli, store: Store, name: str) -> None:
    add_user(store, "user_hostile", first_name=name, last_name=name, username=name)
    for args in (("users", "list"), ("users", "show", "user_hostile")):
        result = cli(*args)
        assert result.exit_code == 0, result.stderr
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout
        if "\x1b" not in name:
            assert name in result.stdout  # printed literally, not as a style
    assert cli("users", "list", "--json").exit_code == 0


@pytest.mark.parametrize("svix_id", ["[/x]", "[red]x[/red]", "\x1b[31mred"])
def test_hostile_svix_id_of_a_rejected_delivery(cli, receiver, store: Store, svix_id: str) -> None:
    from clerksync.deliverylog.records import append_records
    from clerksync.deliverylog.writer import record
    from clerksync.store.mongo import utcnow

    # through the receiver (which may refuse or sanitise it), and as a log written by any
    # version could hold it: either way the table shows it as text
    httpx.post(receiver.url, content=b"{}", headers={"svix-id": svix_id})
    receiver.receiver.log.flush_now()
    raw = record(
        svix_id=svix_id,
        event_type=None,
        user_id=None,
        outcome="rejected",
        received_at=utcnow(),
        duration_ms=0.1,
        error="signature: missing header(s)",
    )
    append_records(store, [raw])
    for _ in range(2):  # and the log stays readable afterwards
        result = cli("events", "list")
        assert result.exit_code == 0, result.stderr
        assert "\x1b" not in result.stdout
        if "\x1b" not in svix_id:
            assert svix_id in result.stdout
        else:
            assert "\\x1b[31mred" in result.stdout  # shown escaped
    tail = cli("events", "tail")
    assert tail.exit_code == 0 and "\x1b" not in tail.stdout


def test_show_prints_no_none(cli, receiver) -> None:
    from tests.conftest import WEBHOOK_SECRET
    from tests.support.receiver import post

    post(receiver.url, WEBHOOK_SECRET, {"type": "session.created", "data": {}}, msg_id="msg_s")
    receiver.receiver.log.flush_now()
    result = cli("events", "show", "msg_s")
    assert result.exit_code == 0
    assert "None" not in result.stdout and "error" not in result.stdout


@pytest.mark.parametrize(
    "since",
    ["99999999999d", "²h", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "yesterday"],
)
def test_odd_since_is_one_line_and_exit_2(cli, store: Store, since: str) -> None:
    for command in (("events", "list"), ("events", "stats"), ("events", "replay", "--failed")):
        result = cli(*command, "--since", since)
        assert result.exit_code == 2, (command, result.stdout, result.stderr)
        assert result.stderr.strip().count("\n") == 0 and "--since" in result.stderr


def test_since_with_an_offset_works(cli, store: Store) -> None:
    assert cli("events", "list", "--since", "2026-01-01T00:00:00+14:00").exit_code == 0


def test_outcome_is_validated(cli, store: Store) -> None:
    for command in (("events", "list"), ("events", "tail")):
        result = cli(*command, "--outcome", "bogus")
        assert result.exit_code == 2 and "applied, duplicate" in result.stderr


def test_a_document_the_app_wrote_oddly(cli, store: Store) -> None:
    store.users.insert_one({"clerkId": "user_odd", "email": "odd@x.com", "createdAt": "yesterday"})
    store.users.insert_one({"email": "no-clerk-id@x.com"})
    listed = cli("users", "list")
    assert listed.exit_code == 0 and "yesterday" in listed.stdout
    assert json.loads(cli("users", "show", "user_odd", "--json").stdout)["createdAt"] == "yesterday"


def test_sync_metadata_over_a_document_without_a_clerk_id(cli, store: Store, fake_clerk) -> None:
    fake_clerk.add_user(user_id="user_real")
    add_user(store, "user_real")
    store.users.insert_one({"email": "no-clerk-id@x.com", "createdAt": datetime.now(timezone.utc)})
    result = cli("sync-metadata", "--json")
    assert "Traceback" not in result.stdout + result.stderr
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["total"] == 1  # the app's own user is not a Clerk user


def test_user_show_and_doctor_fit_80_columns(cli, store: Store, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    add_user(
        store,
        "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S",
        email="someone.with.a.rather.long.address@example-company.com",
        first_name="Alexandrina Victoria",
    )
    shown = cli("users", "show", "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S")
    assert shown.exit_code == 0 and all(len(x) <= 80 for x in shown.stdout.splitlines())
    assert "someone.with.a.rather.long.address@example-company.com" in shown.stdout
    doctor = cli("doctor")
    lines = doctor.stdout.splitlines()
    assert len(lines) > 5 and all(len(x) <= 80 for x in lines)
    marks = ("✓", "·", "!", "✗")  # every line starts with a mark, or is indented under one
    assert all(x.startswith(marks) or x.startswith("  ") for x in lines[:-1])
