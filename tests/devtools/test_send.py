"""`clerksync send` against a running receiver: signed events, diagnosis, curl, dev secret."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from clerksync.devtools.localstate import DEV_SECRET_FILE, write_running_server
from clerksync.kinds.membership import MEMBERSHIP
from clerksync.kinds.organization import ORGANIZATION
from clerksync.store.database import Store
from clerksync.store.lookups import find_user
from tests.conftest import WEBHOOK_SECRET


def test_send_creates_updates_and_deletes(cli, receiver, store: Store) -> None:
    target = ("--url", receiver.url)
    created = cli(
        "send", "user.created", "--user-id", "user_sent", "--email", "s@x.com", *target, "--json"
    )
    assert created.exit_code == 0, created.stderr
    answer = json.loads(created.stdout)
    assert answer["status"] == 200 and answer["latencyMs"] >= 0
    assert find_user(store, "user_sent")["email"] == "s@x.com"

    updated = cli(
        "send", "user.updated", "--user-id", "user_sent", "--first-name", "Grace", *target
    )
    assert updated.exit_code == 0 and ": 200 applied in" in updated.stderr
    assert find_user(store, "user_sent")["firstName"] == "Grace"

    assert cli("send", "user.deleted", "--user-id", "user_sent", *target).exit_code == 0
    assert store.users.count_documents({"clerkId": "user_sent"}) == 0


def test_wrong_secret_shows_the_400_and_its_cause(cli, receiver, store: Store) -> None:
    result = cli("send", "user.created", "--url", receiver.url, "--secret", "whsec_" + "QUJDRA" * 6)
    assert result.exit_code == 1
    assert ": 400 rejected in" in result.stderr
    assert "secret differs" in result.stderr
    assert store.count() == 0


def test_no_receiver_says_to_start_one(cli, webhook_secret) -> None:
    result = cli("send", "user.created", "--url", "http://127.0.0.1:9/api/webhooks/clerk")
    assert result.exit_code == 1
    assert "is `clerksync serve` running" in result.stderr


def test_captured_payload_file(cli, receiver, store: Store, tmp_path) -> None:
    from clerksync.devtools.payloads import clerk_user

    captured = tmp_path / "user.json"
    captured.write_text(json.dumps(clerk_user(user_id="user_captured")))
    result = cli("send", "user.created", "--data", str(captured), "--url", receiver.url)
    assert result.exit_code == 0, result.stderr
    assert find_user(store, "user_captured")


def test_bad_input_is_a_usage_error(cli, webhook_secret) -> None:
    assert cli("send", "user.exploded").exit_code == 2
    assert cli("send", "user.deleted").exit_code == 2  # needs --user-id


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_print_gives_a_curl_command_the_receiver_accepts(cli, receiver, store: Store) -> None:
    result = cli("send", "user.created", "--user-id", "user_curl", "--url", receiver.url, "--print")
    assert result.exit_code == 0
    assert "expires in 5 minutes" in result.stderr
    ran = subprocess.run(["sh", "-c", result.stdout], capture_output=True, text=True, timeout=30)
    assert json.loads(ran.stdout) == {"outcome": "applied"}
    assert find_user(store, "user_curl")


def test_uses_the_secret_of_a_running_serve_dev(
    cli, receiver, store: Store, monkeypatch, tmp_path
) -> None:
    monkeypatch.delenv("WEBHOOK_SECRET")
    monkeypatch.setenv("CLERKSYNC_HOME", str(tmp_path / "state"))
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / DEV_SECRET_FILE).write_text(json.dumps({"secret": WEBHOOK_SECRET}))
    write_running_server(tmp_path / "state", receiver.url, dev=True)
    result = cli("send", "user.created", "--user-id", "user_devsecret")
    assert result.exit_code == 0, result.stderr
    assert find_user(store, "user_devsecret")


def test_session_created_is_acknowledged_and_ignored(cli, receiver) -> None:
    result = cli("send", "session.created", "--url", receiver.url, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["response"] == {"outcome": "ignored"}  # an object


def test_every_documented_event_type_is_accepted(cli, receiver) -> None:
    from clerksync.devtools.send import event_types, examples

    assert set(examples()) <= set(event_types()) and "session.created" in event_types()
    for event_type in event_types():
        if event_type in ("user.updated", "user.deleted"):
            continue  # they need a user: covered below
        result = cli("send", event_type, "--url", receiver.url, "--json")
        assert result.exit_code == 0, (event_type, result.stdout, result.stderr)
        assert json.loads(result.stdout)["status"] == 200


def test_user_updated_changes_the_last_user_send_created(cli, receiver, store: Store) -> None:
    target = ("--url", receiver.url)
    assert cli("send", "user.created", "--email", "grace@example.com", *target).exit_code == 0
    assert cli("send", "user.created", "--email", "ada@example.com", *target).exit_code == 0
    updated = cli("send", "user.updated", "--first-name", "Ada", *target)
    assert updated.exit_code == 0, updated.stderr
    assert store.count() == 2  # no third user
    ada = find_user(store, "ada@example.com")
    assert ada["firstName"] == "Ada" and ada["email"] == "ada@example.com"  # email kept
    grace = find_user(store, "grace@example.com")  # unambiguous: one Grace
    assert grace["firstName"] is None and grace["lastName"] is None  # nothing invented
    assert cli("send", "user.deleted", *target).exit_code == 0
    assert store.count() == 1


def test_user_updated_without_any_user_says_what_to_do(cli, webhook_secret) -> None:
    result = cli("send", "user.updated")
    assert (
        result.exit_code == 2 and "--user-id" in result.stderr and "user.created" in result.stderr
    )


def test_data_is_read_with_a_limit(cli, webhook_secret, tmp_path) -> None:
    import os

    if os.path.exists("/dev/zero"):
        result = cli("send", "user.created", "--data", "/dev/zero")
        assert result.exit_code == 2 and "over 1 MiB" in result.stderr
    big = tmp_path / "big.json"
    big.write_text('{"a": "' + "x" * (1024 * 1024) + '"}')
    assert cli("send", "user.created", "--data", str(big)).exit_code == 2
    missing = cli("send", "user.created", "--data", str(tmp_path / "missing.json"))
    assert missing.exit_code == 2 and missing.stderr.count("\n") == 1


def test_bad_url_is_one_line(cli, webhook_secret) -> None:
    for url in ("localhost:8000", "http://127.0.0.1:99999/x"):
        result = cli("send", "user.created", "--url", url)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr


def test_sends_never_bind_the_database_to_a_made_up_instance(
    cli, receiver, store: Store, fake_clerk, caplog: pytest.LogCaptureFixture
) -> None:
    from clerksync.devtools.payloads import clerk_user, event
    from clerksync.store.instance import bind, bound_instance
    from tests.support.receiver import post

    target = ("--url", receiver.url)
    for event_type in ("user.created", "organization.created"):  # built, and from Clerk's docs
        assert cli("send", event_type, *target).exit_code == 0
    assert bound_instance(store) is None
    result = cli("reconcile", "--json", "--rate", "1000")  # the real key binds it
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["bound"] == "new"
    # a body still naming the docs' instance (an older send, a pasted example): no false alarm
    bind(store, fake_clerk.instance_id, environment="development", source="GET /instance")
    docs = event("user.created", clerk_user(), instance_id="ins_2g7np7Hrk0SN6kj5EDMLDaKNL0S")
    assert post(receiver.url, WEBHOOK_SECRET, docs).status_code == 200
    assert cli("send", "user.created", *target).exit_code == 0
    assert "WEBHOOK_SECRET from the right endpoint" not in caplog.text
    assert bound_instance(store)["instanceId"] == fake_clerk.instance_id  # type: ignore[index]


def test_a_refused_payload_is_not_blamed_on_the_secret(cli, receiver, tmp_path) -> None:
    broken = tmp_path / "user.json"
    broken.write_text(json.dumps({"id": 12345, "object": "user"}))  # the id is no string
    result = cli("send", "user.created", "--data", str(broken), "--url", receiver.url)
    assert result.exit_code == 1
    assert ": 400 rejected in" in result.stderr
    assert "the signature verified, but the receiver refused the event (payload:" in result.stderr
    assert "secret differs" not in result.stderr


def test_send_keeps_its_state_in_a_folder_only_its_owner_can_read(
    cli, receiver, monkeypatch, tmp_path
) -> None:
    import stat

    home = tmp_path / "fresh-home"
    monkeypatch.setenv("CLERKSYNC_HOME", str(home))
    assert cli("send", "user.created", "--url", receiver.url).exit_code == 0
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in home.iterdir()} == {0o600}


@pytest.mark.parametrize("pid", [0, -1, 2**40])
def test_a_recorded_pid_that_names_no_process_is_no_running_serve(
    receiver, tmp_path, pid: object
) -> None:
    from clerksync.devtools.localstate import SERVER_FILE, running_server

    (tmp_path / SERVER_FILE).write_text(json.dumps({"url": receiver.url, "pid": pid}))
    assert running_server(tmp_path) is None  # kill(0, 0) would say "alive": a process group
    write_running_server(tmp_path, receiver.url, dev=False)
    assert running_server(tmp_path) is not None  # this process


def test_a_membership_is_sent_for_the_user_named_and_unused_options_are_refused(
    cli, receiver, store: Store
) -> None:
    target = ("--url", receiver.url)
    assert cli("send", "user.created", "--email", "mem@example.com", *target).exit_code == 0
    user_id = find_user(store, "mem@example.com")["clerkId"]
    sent = cli("send", "organizationMembership.created", "--user-id", user_id, *target)
    assert sent.exit_code == 0, sent.stderr
    [member] = store.collection(MEMBERSHIP).find({"userId": user_id})
    assert member["role"]  # stored as the example's membership, for this user
    stranger = cli(
        "send", "organizationMembership.updated", "--user-id", "user_nobody", *target, "--json"
    )
    assert stranger.exit_code == 0, stranger.stderr  # nothing of the example's user kept
    assert json.loads(stranger.stdout)["status"] == 200
    refused = cli("send", "organization.created", "--email", "x@example.com", *target)
    assert refused.exit_code == 2
    assert "--email does not apply to organization.created" in refused.stderr
    assert store.collection(ORGANIZATION).count_documents({}) == 0  # nothing sent


def test_billing_events_are_paid_by_the_user_send_created_and_set_its_plan(
    cli, receiver, store: Store
) -> None:
    target = ("--url", receiver.url)
    assert cli("send", "user.created", "--email", "payer@example.com", *target).exit_code == 0
    payer = find_user(store, "payer@example.com")
    sent = cli("send", "subscriptionItem.active", "--user-id", payer["clerkId"], *target)
    assert sent.exit_code == 0, sent.stderr
    paid = find_user(store, "payer@example.com")
    assert (paid["plan"], paid["planStatus"]) == ("free-plan", "active")
    item = store.db["subscriptionItems"].find_one({"payerUserId": payer["clerkId"]})
    assert item is not None and item["planSlug"] == "free-plan"


def test_an_invitation_and_a_waitlist_entry_take_the_given_address(
    cli, receiver, store: Store
) -> None:
    target = ("--url", receiver.url)
    for event_type, collection in (
        ("organizationInvitation.created", "organizationInvitations"),
        ("waitlistEntry.created", "waitlistEntries"),
    ):
        sent = cli("send", event_type, "--email", "Someone@Example.com", *target)
        assert sent.exit_code == 0, sent.stderr
        doc = store.db[collection].find_one()
        assert doc is not None and doc["email"] == "someone@example.com", event_type
    refused = cli("send", "role.created", "--email", "x@example.com", *target)
    assert refused.exit_code == 2 and "--email does not apply to role.created" in refused.stderr


def test_an_unknown_event_type_is_answered_with_the_ones_that_exist() -> None:
    from clerksync.devtools.send import build_event
    from clerksync.errors import UsageError

    with pytest.raises(UsageError) as typo:
        build_event("user.craeted")
    assert "did you mean user.created" in str(typo.value)
    with pytest.raises(UsageError) as gone:  # removed from Clerk's spec in 2026
        build_event("subscriptionItem.created")
    assert "subscriptionItem events: abandoned, active, canceled" in str(gone.value)
    with pytest.raises(UsageError) as unknown:
        build_event("invoice.paid")
    assert "the objects being email, organization," in str(unknown.value)
    assert "waitlistEntry" in str(unknown.value)


def test_the_overrides_follow_each_examples_shape() -> None:
    """``--user-id`` pays for every documented example with a payer, ``--email`` addresses
    every one with an address, whatever its type; any other example refuses them."""
    from clerksync.devtools.send import build_event, examples
    from clerksync.errors import UsageError

    paid = addressed = 0
    for event_type, example in sorted(examples().items()):
        if event_type.startswith(("user.", "organizationMembership.", "session.")):
            continue  # --user-id names their user (tested above)
        data = example.get("data") or {}
        if isinstance(data.get("payer"), dict):
            body = build_event(event_type, user_id="user_2payer")
            assert body["data"]["payer"]["user_id"] == "user_2payer", event_type
            paid += 1
        else:
            with pytest.raises(UsageError, match="--user-id does not apply"):
                build_event(event_type, user_id="user_2payer")
        if isinstance(data.get("email_address"), str):
            body = build_event(event_type, email="given@example.com")
            assert body["data"]["email_address"] == "given@example.com", event_type
            addressed += 1
        else:
            with pytest.raises(UsageError, match="--email does not apply"):
                build_event(event_type, email="given@example.com")
    assert paid >= 15 and addressed >= 5  # billing's events; invitations' and entries'


def test_an_index_refusal_is_shown_whole_with_its_real_cause(cli, receiver, store: Store) -> None:
    """The answer was cut at 300 characters (mid-word, the index's name lost past it) and
    blamed on the database ("its database may be down")."""
    from tests.support.writes import seed_user

    name = "app_username_unique_" + "u" * 200  # the app's index, named at length
    store.users.create_index("username", unique=True, name=name)
    seed_user(store, "user_first", username="grace")
    args = ("send", "user.created", "--username", "grace", "--url", receiver.url)
    result = cli(*args)
    assert result.exit_code == 1 and ": 503 failed in" in result.stderr
    answer = " ".join(result.stderr.split("answer:", 1)[1].split("likely cause:", 1)[0].split())
    assert name in answer and len(answer) > 300
    cause = result.stderr.split("likely cause:", 1)[1]
    assert "an index of the app's refused the write" in cause and "clerksync doctor" in cause
    assert "database may be down" not in result.stderr


def test_json_names_the_user_send_made(cli, receiver, store: Store) -> None:
    made = json.loads(cli("send", "user.created", "--url", receiver.url, "--json").stdout)
    assert made["type"] == "user.created" and made["userId"] == made["objectId"]
    assert find_user(store, made["userId"])["clerkId"] == made["userId"]
    org = json.loads(cli("send", "organization.created", "--url", receiver.url, "--json").stdout)
    assert org["userId"] is None and org["objectId"].startswith("org_")
