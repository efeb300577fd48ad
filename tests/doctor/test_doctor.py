"""`clerksync doctor`: a healthy setup passes; each broken link fails its own check."""

from __future__ import annotations

import json
import time

import pytest

from clerksync.kinds.user import USER
from clerksync.store.database import Store
from clerksync.writeback.queue import queue_of
from tests.conftest import WEBHOOK_SECRET
from tests.support.fakeclerk import SECRET_KEY, FakeClerk
from tests.support.writes import upsert


def run(cli) -> tuple[int, dict, str]:
    started = time.monotonic()
    result = cli("doctor", "--json")
    assert time.monotonic() - started < 30
    everything = result.stdout + result.stderr
    assert SECRET_KEY not in everything and WEBHOOK_SECRET not in everything
    return result.exit_code, json.loads(result.stdout), everything


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def test_healthy_setup_exits_0(
    cli, store: Store, fake_clerk: FakeClerk, webhook_secret: str
) -> None:
    fake_clerk.add_user(user_id="user_one")
    from clerksync.devtools.payloads import clerk_user
    from clerksync.kinds.user import parse_clerk_user

    upsert(store, USER, parse_clerk_user(clerk_user(user_id="user_one")))
    code, report, _ = run(cli)
    assert code == 0, report
    assert report["ok"] is True
    checks = by_name(report)
    assert checks["MongoDB"]["status"] == "pass"
    assert checks["Clerk-id index"]["status"] == "pass"
    assert (
        checks["Clerk API"]["status"] == "pass" and "1 Clerk users" in checks["Clerk API"]["detail"]
    )
    assert checks["user counts"]["status"] == "pass"
    assert checks["WEBHOOK_SECRET"]["detail"] == "whsec_…LaSw"
    assert checks["write-backs"]["status"] == "warn"  # the user's write-back is still queued


def test_clerk_key_rejected(
    cli, store: Store, fake_clerk: FakeClerk, webhook_secret: str, monkeypatch
) -> None:
    monkeypatch.setenv("CLERK_SECRET_KEY", "sk_test_" + "wrong" * 6)
    code, report, text = run(cli)
    assert code == 1
    check = by_name(report)["Clerk API"]
    assert check["status"] == "fail" and "401" in check["detail"]
    assert "API keys" in check["hint"]
    assert "wrong" * 6 not in text


def test_missing_webhook_secret(cli, store: Store) -> None:
    code, report, _ = run(cli)
    assert code == 1
    check = by_name(report)["WEBHOOK_SECRET"]
    assert check["status"] == "fail" and "Signing Secret" in check["hint"]


def test_malformed_webhook_secret(cli, store: Store, monkeypatch) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", "whsec_abc!!")
    code, report, text = run(cli)
    assert code == 1
    check = by_name(report)["WEBHOOK_SECRET"]
    assert check["status"] == "fail" and "base64" in check["detail"]
    assert "abc!!" not in text


def test_unreachable_mongodb(cli, monkeypatch, webhook_secret: str) -> None:
    monkeypatch.setenv("MONGODB_URL", "mongodb://127.0.0.1:9/")
    monkeypatch.setenv("CLERKSYNC_MONGO_TIMEOUT_MS", "1000")
    code, report, _ = run(cli)
    assert code == 1
    check = by_name(report)["MongoDB"]
    assert check["status"] == "fail" and "did not answer" in check["detail"]
    assert check["hint"]


def test_count_difference_names_reconcile(
    cli, store: Store, fake_clerk: FakeClerk, webhook_secret: str
) -> None:
    fake_clerk.add_user()
    code, report, _ = run(cli)
    check = by_name(report)["user counts"]
    assert check["status"] == "warn" and "reconcile" in check["hint"]
    assert code == 0


def test_mismatched_key_pair(
    cli, store: Store, fake_clerk: FakeClerk, webhook_secret: str, monkeypatch
) -> None:
    monkeypatch.setenv("NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY", "pk_live_Y2xlcmsuZXhhbXBsZS5jb20k")
    code, report, _ = run(cli)
    assert code == 1
    assert by_name(report)["key pair"]["status"] == "fail"


def test_human_output_marks_and_fixes(cli, store: Store) -> None:
    result = cli("doctor")
    assert result.exit_code == 1
    assert "✗ WEBHOOK_SECRET" in result.stdout
    assert "fix: set WEBHOOK_SECRET" in result.stdout


def test_malformed_secret_with_a_receiver_answering_is_a_check_not_a_crash(
    cli, receiver, monkeypatch
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", "whsec_replace_me")  # .env.example's placeholder
    monkeypatch.setenv("NEXT_PUBLIC_URL", receiver.base)
    code, report, text = run(cli)
    assert code == 1 and "Traceback" not in text
    checks = by_name(report)
    assert checks["WEBHOOK_SECRET"]["status"] == "fail"
    assert checks[f"receiver {receiver.url}"]["detail"].startswith("refused an unsigned request")
    human = cli("doctor")
    assert human.exit_code == 1 and "Traceback" not in human.stdout + human.stderr
    assert "✗ WEBHOOK_SECRET" in human.stdout


def test_loopback_public_url_points_to_clerk_webhooks_listen(cli, store, monkeypatch) -> None:
    for url in ("http://127.0.0.1:8000", "http://localhost:3000", "http://192.168.1.20"):
        monkeypatch.setenv("NEXT_PUBLIC_URL", url)
        _, report, _ = run(cli)
        check = by_name(report)["NEXT_PUBLIC_URL"]
        assert check["status"] == "warn", url
        assert "clerk webhooks listen --forward-to" in check["hint"]
        assert "webhook endpoint" not in by_name(report)  # no "Clerk must post to" a loopback
    monkeypatch.setenv("NEXT_PUBLIC_URL", "https://app.example.com")
    assert by_name(run(cli)[1])["NEXT_PUBLIC_URL"]["status"] == "pass"


def test_doctor_uses_the_secret_of_a_running_serve_dev(
    cli, receiver, monkeypatch, tmp_path
) -> None:
    from clerksync.devtools.localstate import DEV_SECRET_FILE, write_running_server

    monkeypatch.delenv("WEBHOOK_SECRET")
    home = tmp_path / "home"
    monkeypatch.setenv("CLERKSYNC_HOME", str(home))
    home.mkdir()
    (home / DEV_SECRET_FILE).write_text(json.dumps({"secret": WEBHOOK_SECRET}))
    write_running_server(home, receiver.url, dev=True)
    code, report, _ = run(cli)
    checks = by_name(report)
    assert checks["WEBHOOK_SECRET"]["status"] == "pass"
    assert checks[f"receiver {receiver.url}"]["status"] == "pass"
    assert "receiver http://127.0.0.1:8000/api/webhooks/clerk" not in checks  # no guessing
    assert code == 0, report


def test_parked_and_dropped_write_backs_are_named_with_the_fix(
    cli, store: Store, fake_clerk: FakeClerk, webhook_secret: str
) -> None:
    from clerksync.devtools.payloads import clerk_user
    from clerksync.kinds.user import parse_clerk_user

    for user_id in ("user_parked", "user_gone", "user_fine"):
        fake_clerk.add_user(user_id=user_id)
        upsert(store, USER, parse_clerk_user(clerk_user(user_id=user_id)))
    queue = queue_of(store)
    parked = queue.claim(store.clerk_key("user_parked"), due_only=False)
    assert parked is not None  # a park ends a claim, like a drop
    queue.park(parked, "the payload cannot be written")
    claimed = queue.claim(store.clerk_key("user_gone"), due_only=False)
    assert claimed is not None
    queue.drop(claimed, "not found in Clerk (404)")
    code, report, _ = run(cli)
    check = by_name(report)["stopped write-backs"]
    assert check["status"] == "warn" and code == 0
    assert "1 parked, 1 dropped" in check["detail"]
    assert "user_parked" in check["detail"] and "user_gone" in check["detail"]
    assert "user_fine" not in check["detail"]
    assert "clerksync sync-metadata" in check["hint"]
    assert "1 metadata write-back pending" in by_name(report)["write-backs"]["detail"]
    # sync-metadata writes them, and the warning goes
    assert cli("sync-metadata", "--rate", "1000").exit_code == 0
    assert "stopped write-backs" not in by_name(run(cli)[1])


def test_doctor_probes_no_guessed_port(cli, store: Store, webhook_secret: str) -> None:
    _, report, everything = run(cli)
    check = by_name(report)["receiver"]
    assert check["status"] == "warn" and "no receiver to probe" in check["detail"]
    assert ":8000" not in everything
    assert not [name for name in by_name(report) if name.startswith("receiver http")]


@pytest.mark.parametrize("schema", ["fastapi"], indirect=True)
def test_the_apps_own_users_with_a_null_clerk_id_are_no_schema_warning(store: Store) -> None:
    """The report's app creates users itself, ``clerk_user_id`` null until Clerk's user
    arrives: before any Clerk user existed, doctor warned "of another type clerk_user_id
    (NoneType)" about them. Only what clerksync wrote is compared with the mapping."""
    from clerksync.doctor.database import check_schema_sample
    from tests.support.writes import seed_user

    own = {"clerk_user_id": None, "user_id": 7, "username": "ada", "name": "Ada", "role": None}
    store.users.insert_one({**own, "email": "ada@example.com", "phone": ""})
    before = check_schema_sample(store)
    assert before.status == "pass", before.detail
    assert "no documents clerksync wrote" in before.detail
    seed_user(store, "user_grace", email="grace@example.com")
    after = check_schema_sample(store)
    assert after.status == "pass" and "1 sampled document matches" in after.detail, after.detail
