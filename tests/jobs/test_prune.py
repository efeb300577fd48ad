"""Prune safety: the instance binding, the mass-prune guard, and undo, against the fake Clerk."""

from __future__ import annotations

import gc
import json
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from clerksync.devtools.payloads import clerk_user, event
from clerksync.kinds.user import USER, parse_clerk_user
from clerksync.store.database import Store
from clerksync.store.instance import bound_instance
from clerksync.store.lookups import find_user
from clerksync.store.users import set_admin
from clerksync.store.writer import Writer
from tests.conftest import WEBHOOK_SECRET
from tests.jobs.test_prune_orgs import kind_counts
from tests.support.fakeclerk import FakeClerk
from tests.support.receiver import post
from tests.support.writes import upsert

FAST = ("--rate", "1000")


def synced(cli, fake: FakeClerk, store: Store, n: int) -> None:
    """A database reconciled with ``fake`` holding ``n`` users (and so bound to it)."""
    for i in range(n):
        fake.add_user(user_id=f"user_k{i:04d}", created_at=1000 + i)
    result = cli("reconcile", "--json", *FAST)
    assert result.exit_code == 0, result.stderr
    assert store.count() == n


@pytest.fixture
def other_clerk(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClerk]:
    """A second instance (another id), reached with the same key variables."""
    fake = FakeClerk(instance_id="ins_2otherinstance000000000", environment_type="production")
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def test_first_bulk_job_binds_the_database_to_its_instance(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    dry = json.loads(cli("reconcile", "--dry-run", "--json", *FAST).stdout)
    assert dry["bound"] == "not yet" and bound_instance(store) is None  # a dry run writes nothing
    synced(cli, fake_clerk, store, 3)
    bound = bound_instance(store)
    assert bound is not None and bound["instanceId"] == fake_clerk.instance_id
    again = json.loads(cli("reconcile", "--json", *FAST).stdout)
    assert again["bound"] == "same" and again["instance"] == fake_clerk.instance_id


def test_prune_against_another_instance_refuses_and_changes_nothing(
    cli, store: Store, fake_clerk: FakeClerk, other_clerk: FakeClerk, monkeypatch
) -> None:
    synced(cli, fake_clerk, store, 30)
    other_clerk.add_user(user_id="user_stranger")
    monkeypatch.setenv("CLERK_API_URL", other_clerk.url)
    for args in (("reconcile", "--prune", "--yes", "--json"), ("sync-metadata", "--json")):
        result = cli(*args, *FAST)
        assert result.exit_code == 2, result.stdout
        assert fake_clerk.instance_id in result.stderr and other_clerk.instance_id in result.stderr
        assert "--rebind" in result.stderr
    assert store.count() == 30 and store.tombstones.count_documents({}) == 0
    assert store.users.count_documents({"clerkId": "user_stranger"}) == 0
    assert other_clerk.counts["GET /users"] == 0 and other_clerk.metadata_writes == []
    # --rebind: the operator says the database moves; it is remembered.
    moved = cli("reconcile", "--rebind", "--json", *FAST)
    assert moved.exit_code == 0 and json.loads(moved.stdout)["bound"] == "rebound"
    assert bound_instance(store)["instanceId"] == other_clerk.instance_id  # type: ignore[index]


def test_prune_against_an_empty_instance_refuses_and_deletes_nothing(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    synced(cli, fake_clerk, store, 30)
    fake_clerk.users.clear()  # the right instance, but it lists no one (say, a wrong URL path)
    fake_clerk.version += 1
    result = cli("reconcile", "--prune", "--yes", "--json", *FAST)
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["orphaned"] == 30 and summary["pruned"] == 0
    assert "Clerk lists no users" in summary["prune_refused"]
    assert store.count() == 30 and store.tombstones.count_documents({}) == 0
    # asked interactively, it refuses before asking
    asked = cli("reconcile", "--prune", *FAST, input="y\n")
    assert asked.exit_code == 1 and "Refusing to prune" in asked.stderr
    assert store.count() == 30


def test_a_large_share_needs_allow_mass_prune(cli, store: Store, fake_clerk: FakeClerk) -> None:
    synced(cli, fake_clerk, store, 100)
    for i in range(20):
        del fake_clerk.users[f"user_k{i:04d}"]
    fake_clerk.version += 1
    refused = cli("reconcile", "--prune", "--yes", "--json", *FAST)
    assert refused.exit_code == 1 and "20 of 100" in json.loads(refused.stdout)["prune_refused"]
    assert store.count() == 100
    allowed = cli("reconcile", "--prune", "--yes", "--allow-mass-prune", "--json", *FAST)
    assert allowed.exit_code == 0 and json.loads(allowed.stdout)["pruned"] == 20
    assert store.count() == 80


def test_a_few_orphans_prune_without_the_flag(cli, store: Store, fake_clerk) -> None:
    synced(cli, fake_clerk, store, 100)
    for i in range(5):
        del fake_clerk.users[f"user_k{i:04d}"]
    fake_clerk.version += 1
    summary = json.loads(cli("reconcile", "--prune", "--yes", "--json", *FAST).stdout)
    assert summary["pruned"] == 5 and summary["prune_run"].startswith("prune-")


def test_a_wrong_prune_is_undone(cli, store: Store, fake_clerk: FakeClerk) -> None:
    synced(cli, fake_clerk, store, 40)
    set_admin(store, find_user(store, "user_k0003")["_id"], True)
    before = {d["clerkId"]: d for d in store.users.find({})}
    kept = dict(fake_clerk.users)
    fake_clerk.users.clear()
    fake_clerk.version += 1
    wrong = cli("reconcile", "--prune", "--yes", "--allow-mass-prune", "--json", *FAST)
    run = json.loads(wrong.stdout)["prune_run"]
    assert store.count() == 0 and store.tombstones.count_documents({}) == 40

    undone = cli("reconcile", "--undo-prune", run, "--json")
    assert undone.exit_code == 0, undone.stderr
    report = json.loads(undone.stdout)
    assert {k: report[k] for k in ("run", "restored", "present", "tombstones_removed")} == {
        "run": run,
        "restored": 40,
        "present": 0,
        "tombstones_removed": 40,
    }
    assert report["users"] == kind_counts(restored=40, tombstones_removed=40)
    after = {d["clerkId"]: d for d in store.users.find({})}
    assert after == before  # same _id (Clerk's userMongoId stays right), admin flag kept
    assert store.tombstones.count_documents({}) == 0
    # Live deliveries apply again, and the right reconcile finds nothing missing.
    fake_clerk.users.update(kept)
    fake_clerk.version += 1
    newer = parse_clerk_user({**kept["user_k0001"], "updated_at": 10**13, "first_name": "Back"})
    assert upsert(store, USER, newer).outcome == "applied"
    again = json.loads(cli("reconcile", "--json", *FAST).stdout)
    assert again["created"] == 0 and again["orphaned"] == 0
    # undoing twice restores nothing more; an unknown run is a clear failure
    twice = json.loads(cli("reconcile", "--undo-prune", run, "--json").stdout)
    assert twice["restored"] == 0 and twice["present"] == 0 and twice["already_undone"] == 40
    unknown = cli("reconcile", "--undo-prune", "prune-nope")
    assert unknown.exit_code == 1 and run in unknown.stderr


def test_the_first_delivery_binds_an_unbound_database(
    receiver, store: Store, other_clerk: FakeClerk, cli, monkeypatch
) -> None:
    payload = event(
        "user.created", clerk_user(user_id="user_d"), instance_id="ins_2fromadelivery00000000"
    )
    assert post(receiver.url, WEBHOOK_SECRET, payload).status_code == 200
    bound = bound_instance(store)
    assert bound is not None and bound["instanceId"] == payload["instance_id"]
    assert bound["source"] == "delivery"
    # a bulk job with a key for another instance now refuses
    monkeypatch.setenv("CLERK_API_URL", other_clerk.url)
    monkeypatch.setenv("CLERK_SECRET_KEY", other_clerk.secret_key)
    result = cli("reconcile", "--json", *FAST)
    assert result.exit_code == 2 and payload["instance_id"] in result.stderr
    assert store.count() == 1


def test_a_reconcile_that_fails_before_its_deletes_prunes_nothing(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    synced(cli, fake_clerk, store, 20)
    del fake_clerk.users["user_k0002"]
    fake_clerk.version += 1
    # Clerk refuses the organizations list: every kind is walked before anything is deleted.
    answer = fake_clerk._handle_orgs
    fake_clerk._handle_orgs = lambda method, segments, query, auth: (  # type: ignore[method-assign]
        (422, {"errors": [{"code": "refused", "message": "refused"}]}, {})
        if segments == ["organizations"]
        else answer(method, segments, query, auth)
    )
    failed = cli("reconcile", "--prune", "--yes", *FAST)
    assert failed.exit_code == 1 and store.count() == 20
    assert "--undo-prune" not in failed.stderr


def test_a_reconcile_that_fails_after_pruning_names_the_run(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    from clerksync.errors import StoreUnavailable

    synced(cli, fake_clerk, store, 20)
    for gone in ("user_k0002", "user_k0003"):
        del fake_clerk.users[gone]
    fake_clerk.version += 1
    real = Writer.delete
    calls: list[str] = []

    def lost_after_one(self: Writer, kind: Any, clerk_id: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(clerk_id)
        if len(calls) > 1:
            raise StoreUnavailable("the database went away")  # the fault, injected
        return real(self, kind, clerk_id, *args, **kwargs)

    with pytest.MonkeyPatch.context() as fault:
        fault.setattr(Writer, "delete", lost_after_one)
        failed = cli("reconcile", "--prune", "--yes", *FAST)
    assert failed.exit_code == 1 and store.count() == 19  # one went before the fault
    found = re.search(r"--undo-prune (prune-\S+)`", failed.stderr)
    assert found, failed.stderr
    undone = json.loads(cli("reconcile", "--undo-prune", found.group(1), "--json").stdout)
    assert undone["users"]["restored"] == 1 and store.count() == 20


def temporary_tables() -> int:
    """SQLite connections this process holds open (reconcile's temporary id tables)."""
    count = 0
    for held in gc.get_objects():
        if type(held) is sqlite3.Connection:
            try:
                held.execute("SELECT 1")
            except sqlite3.ProgrammingError:  # closed
                continue
            count += 1
    return count


def test_a_reconcile_whose_page_fails_leaves_no_temporary_table_open(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    """Its tables are closed when it fails, not whenever the failure is let go (a caller that
    keeps the exception, to log or report it, keeps every frame's tables otherwise)."""
    from clerksync.clerk.gateway import ClerkGateway
    from clerksync.errors import ClerkApiError
    from clerksync.jobs.reconcile import reconcile
    from tests.support.fakeclerk import SECRET_KEY

    synced(cli, fake_clerk, store, 30)  # MongoDB holds users: the snapshot has rows to write
    before = temporary_tables()
    fake_clerk.fail_path("/users", status=400)  # the first page of users: not retried
    gateway = ClerkGateway(SECRET_KEY, api_url=fake_clerk.url)
    with pytest.raises(ClerkApiError) as failed:
        reconcile(store, gateway, rate=1000)
    assert failed.value.status == 400
    assert temporary_tables() == before  # while the failure is still held
