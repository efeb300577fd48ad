"""Tables: the columns that fit are shown and the rest named; emails and ids are never cut
(they wrap); no line ends in spaces; into a pipe, tab-separated whole rows; headings in
`events stats`."""

from __future__ import annotations

import pytest

from clerksync.store.database import Store
from tests.conftest import WEBHOOK_SECRET
from tests.support.receiver import post
from tests.support.writes import seed_user

ID = "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S"  # Clerk's ids are 32 characters


def users(store: Store, email: str, count: int = 3) -> list[str]:
    emails = []
    for i in range(count):
        emails.append(email.replace("@", f"{i}@"))
        seed_user(
            store,
            f"{ID[:-3]}{i:03d}",
            email=emails[-1],
            first_name="Alexandrina Victoria",
            last_name="Saxe-Coburg and Gotha",
            username=f"a_rather_long_username_{i}",
        )
    return emails


def test_at_80_columns_emails_stay_whole_and_the_columns_left_out_are_named(
    cli, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    emails = users(store, "alexandrina.victoria@example-company.com")  # 41 characters
    result = cli("users", "list")
    assert result.exit_code == 0, result.stderr
    lines = [x for x in result.stdout.splitlines() if x.strip()]
    assert len(lines) == 3 + 3 and all(len(x) <= 80 for x in lines)
    assert "…" not in result.stdout
    for email in emails:
        assert email in result.stdout
    assert "left out to fit 80 columns" in result.stderr
    for heading in ("name", "username", "created"):
        assert heading in result.stderr


def test_an_email_too_long_to_fit_wraps_rather_than_being_cut(
    cli, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    (email,) = users(store, "someone.with.a.very.long.address.indeed@example-company.com", 1)
    result = cli("users", "list")
    assert "…" not in result.stdout and all(len(x) <= 80 for x in result.stdout.splitlines())
    assert email in "".join(result.stdout.split())  # whole, over two lines
    assert ID[:-3] + "000" in result.stdout


def test_events_list_names_the_columns_it_leaves_out(
    cli, receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clerksync.devtools.payloads import clerk_user, event

    monkeypatch.setenv("COLUMNS", "80")
    payload = event("organizationMembership.created", {"id": "orgmem_x"})
    post(receiver.url, WEBHOOK_SECRET, payload, msg_id="msg_" + "x" * 30)
    post(receiver.url, WEBHOOK_SECRET, event("user.created", clerk_user()), msg_id="msg_y")
    receiver.receiver.log.flush_now()
    result = cli("events", "list")
    assert all(len(x) <= 80 for x in result.stdout.splitlines())
    assert "left out to fit 80 columns" in result.stderr


def test_no_line_ends_in_spaces(cli, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    users(store, "a@example.com")
    for command in (("users", "list"), ("users", "show", ID[:-3] + "000"), ("doctor",)):
        shown = cli(*command).stdout
        assert shown.strip() and not [x for x in shown.splitlines() if x != x.rstrip()], command


def test_into_a_pipe_rows_are_tab_separated_and_whole(
    cli, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    emails = users(store, "someone.with.a.very.long.address.indeed@example-company.com")
    result = cli("users", "list")
    lines = result.stdout.splitlines()
    assert lines[0].split("\t") == ["clerk id", "email", "name", "username", "admin", "created"]
    assert len(lines) == 4 and all(x.count("\t") == 5 for x in lines)
    assert {x.split("\t")[1] for x in lines[1:]} == set(emails)
    assert "Alexandrina Victoria Saxe-Coburg and Gotha" in result.stdout
    assert "3 users" in result.stderr and "3 users" not in result.stdout
    doctor = cli("doctor").stdout
    assert not [x for x in doctor.splitlines() if x != x.rstrip()]


def test_events_stats_has_headings(cli, receiver) -> None:
    from clerksync.devtools.payloads import clerk_user, event

    post(receiver.url, WEBHOOK_SECRET, event("user.created", clerk_user()), msg_id="msg_s1")
    post(receiver.url, WEBHOOK_SECRET, event("session.created", {"id": "sess_1"}))
    receiver.receiver.log.flush_now()
    shown = cli("events", "stats").stdout
    assert "2 deliveries, by outcome" in shown and "by event type" in shown
    outcome_heading = next(x for x in shown.splitlines() if x.startswith("outcome"))
    assert outcome_heading.split() == ["outcome", "count", "rate"]
    assert any(x.split() == ["event", "type", "count"] for x in shown.splitlines())
