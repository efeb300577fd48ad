"""Undo puts back only what the prune run took and nothing deleted for real since.

A prune's tombstones carry its run id; a real delete afterwards (a ``user.deleted``,
``organization.deleted``, ``organizationMembership.deleted``) takes the tombstone over. Undo
leaves such objects deleted, and a membership comes back only with its user and organization.
"""

from __future__ import annotations

import json
from typing import Any

from clerksync.kinds.membership import MEMBERSHIP
from clerksync.kinds.organization import ORGANIZATION, parse_organization
from clerksync.kinds.user import USER
from clerksync.store.database import Store
from tests.jobs.test_prune_orgs import FAST, drop_user, reconciled, seed
from tests.support.commands import AfterCommand, listened
from tests.support.fakeclerk import FakeClerk, clerk_organization
from tests.support.writes import delete, delete_outcome, upsert_outcome


def pruned_run(cli: object, *args: str) -> str:
    out = cli("reconcile", "--prune", "--yes", "--json", *FAST, *args)  # type: ignore[operator]
    assert out.exit_code == 0, out.stderr
    return str(json.loads(out.stdout)["prune_run"])


def undo(cli: object, run: str) -> dict[str, object]:
    out = cli("reconcile", "--undo-prune", run, "--json")  # type: ignore[operator]
    assert out.exit_code == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_a_user_deleted_for_real_after_the_prune_stays_deleted(
    cli: object, store: Store, fake_clerk: FakeClerk
) -> None:
    seed(fake_clerk, 20, 0, [])
    reconciled(cli)
    drop_user(fake_clerk, "user_m0004")
    run = pruned_run(cli)
    assert delete(store, USER, "user_m0004").outcome == "duplicate"  # user.deleted arrives
    report = undo(cli, run)
    assert report["users"]["deleted_since"] == 1 and report["restored"] == 0  # type: ignore[index]
    assert store.users.count_documents({"clerkId": "user_m0004"}) == 0
    assert store.is_tombstoned("user_m0004")  # the real delete's tombstone stays


def test_rerunning_an_undo_after_a_real_delete_does_not_bring_the_user_back(
    cli: object, store: Store, fake_clerk: FakeClerk
) -> None:
    seed(fake_clerk, 20, 0, [])
    reconciled(cli)
    drop_user(fake_clerk, "user_m0004")
    run = pruned_run(cli)
    assert undo(cli, run)["restored"] == 1
    assert delete(store, USER, "user_m0004").outcome == "applied"  # later, deleted for real
    again = undo(cli, run)
    assert again["restored"] == 0 and again["already_undone"] == 1
    assert store.users.count_documents({"clerkId": "user_m0004"}) == 0
    assert store.is_tombstoned("user_m0004")


def test_cascaded_memberships_stay_deleted_when_they_or_their_org_were_deleted_since(
    cli: object, store: Store, fake_clerk: FakeClerk
) -> None:
    seed(fake_clerk, 20, 3, [1, 2])
    reconciled(cli)
    drop_user(fake_clerk, "user_m0001")  # its three memberships go with it
    run = pruned_run(cli)
    delete_outcome(store, ORGANIZATION, "org_p0000")  # for real, after the prune
    delete_outcome(store, MEMBERSHIP, "orgmem_p0001_001")
    report = undo(cli, run)
    back = sorted(d["clerkId"] for d in store.collection(MEMBERSHIP).find({"userId": "user_m0001"}))
    assert back == ["orgmem_p0002_001"]
    assert report["memberships"]["deleted_since"] == 2  # type: ignore[index]
    assert {"org_p0000", "orgmem_p0001_001"} <= set(store.tombstones.distinct("_id"))
    assert store.users.count_documents({"clerkId": "user_m0001"}) == 1


def test_a_membership_waits_for_its_organization_whose_restore_was_refused(
    cli: object, store: Store, fake_clerk: FakeClerk
) -> None:
    seed(fake_clerk, 20, 12, [0])
    reconciled(cli)
    store.collection(ORGANIZATION).create_index("name", unique=True, name="app_org_name")
    fake_clerk.remove_org("org_p0003")  # with its membership
    run = pruned_run(cli)
    newcomer = clerk_organization(org_id="org_new", name="Org 3")  # takes the name meanwhile
    upsert_outcome(store, ORGANIZATION, parse_organization(newcomer))
    refused = cli("reconcile", "--undo-prune", run)  # type: ignore[operator]
    assert refused.exit_code == 1 and "app_org_name" in refused.stderr
    members = store.collection(MEMBERSHIP)
    assert members.count_documents({"organizationId": "org_p0003"}) == 0  # not under a tombstone
    store.collection(ORGANIZATION).delete_one({"clerkId": "org_new"})  # the operator's fix
    undo(cli, run)
    assert members.count_documents({"organizationId": "org_p0003"}) == 1
    assert store.collection(ORGANIZATION).count_documents({"clerkId": "org_p0003"}) == 1
    assert not store.is_tombstoned("org_p0003")


def test_undoing_an_older_run_waits_for_a_later_prune_of_the_membership_s_user(
    cli: object, store: Store, fake_clerk: FakeClerk
) -> None:
    seed(fake_clerk, 20, 3, [1])
    reconciled(cli)
    with fake_clerk.lock:  # run 1 prunes one membership of user 1…
        del fake_clerk.memberships["orgmem_p0000_001"]
        fake_clerk.version += 1
    first = pruned_run(cli)
    drop_user(fake_clerk, "user_m0001")  # …run 2 prunes user 1 (and its two others)
    second = pruned_run(cli)
    members = store.collection(MEMBERSHIP)
    report = undo(cli, first)
    assert report["memberships"]["waiting"] == 1  # type: ignore[index]
    assert members.count_documents({"clerkId": "orgmem_p0000_001"}) == 0  # not under run 2's
    undo(cli, second)
    assert store.users.count_documents({"clerkId": "user_m0001"}) == 1
    again = undo(cli, first)  # the rerun finishes it
    assert again["memberships"]["restored"] == 1  # type: ignore[index]
    assert members.count_documents({"userId": "user_m0001"}) == 3
    assert store.tombstones.count_documents({}) == 0


def test_a_real_delete_while_the_undo_runs_is_not_undone(
    cli: object, store: Store, fake_clerk: FakeClerk, fail_points: Any
) -> None:
    """``user.deleted`` lands after the undo read the tombstones and before its insert (the
    insert is held by the wire server's fail point, 5 s, while the delete is done): the delete
    takes the run's tombstone over and finds nothing to remove, so the undo's check after
    its insert removes what it put back."""
    import threading
    import uuid

    from pymongo import monitoring

    from clerksync.jobs.undo import undo_prune

    seed(fake_clerk, 20, 0, [])
    reconciled(cli)
    drop_user(fake_clerk, "user_m0004")
    run = pruned_run(cli)
    name = f"undo-{uuid.uuid4().hex[:8]}"
    inserting = threading.Event()

    class Inserts(monitoring.CommandListener):
        def started(self, event: Any) -> None:
            if event.command_name == "insert" and event.command.get("insert") == "users":
                inserting.set()

        def succeeded(self, event: Any) -> None: ...

        def failed(self, event: Any) -> None: ...

    fail_points(
        {"times": 1},
        {"failCommands": ["insert"], "blockConnection": True, "blockTimeMS": 5000, "appName": name},
    )
    undoer = listened(store, Inserts(), appname=name)
    report: dict[str, Any] = {}
    undoing = threading.Thread(target=lambda: report.update(undo_prune(undoer, run)))
    try:
        undoing.start()
        assert inserting.wait(30), "the undo never inserted"
        assert delete(store, USER, "user_m0004").outcome == "duplicate"  # the run's tombstone
        undoing.join(60)
    finally:
        undoer.client.close()
    assert report["users"]["deleted_since"] == 1 and report["restored"] == 0, report
    assert store.users.count_documents({"clerkId": "user_m0004"}) == 0
    assert store.is_tombstoned("user_m0004")


def test_a_retry_between_the_undos_insert_and_its_tombstones_keeps_the_restored_user(
    cli: object, store: Store, fake_clerk: FakeClerk
) -> None:
    """The undo puts the document back, then lifts the run's tombstones: a Svix retry of the
    user's last state in between is a duplicate (a prune's tombstone is the prune's to
    lift), not a delete of what the undo restored."""
    import copy

    from clerksync.jobs.undo import undo_prune
    from clerksync.kinds.user import parse_clerk_user

    seed(fake_clerk, 20, 0, [])
    reconciled(cli)
    store.users.update_one({"clerkId": "user_m0004"}, {"$set": {"isAdmin": True}})  # the app's
    last = copy.deepcopy(fake_clerk.users["user_m0004"])  # the state a retry carries
    drop_user(fake_clerk, "user_m0004")
    run = pruned_run(cli)
    outcomes: list[str] = []
    retry = AfterCommand(
        lambda e: e.command_name == "insert" and e.command.get("insert") == "users",
        lambda: outcomes.append(upsert_outcome(store, USER, parse_clerk_user(last))),
    )
    undoing = listened(store, retry)
    try:
        report = undo_prune(undoing, run)
    finally:
        undoing.client.close()
    assert outcomes == ["duplicate"]
    assert report["users"]["restored"] == 1  # type: ignore[index]
    assert store.users.find_one({"clerkId": "user_m0004"})["isAdmin"] is True  # type: ignore[index]


def test_a_retry_during_a_prunes_cascade_leaves_the_journal_whole(
    cli: object, store: Store, fake_clerk: FakeClerk
) -> None:
    """The prune writes the user's tombstone, then journals and removes its memberships: a
    Svix retry of one in between (its parent tombstoned by the prune) leaves it for the
    cascade, which journals it, so the undo brings it back."""
    import copy

    from clerksync.jobs.prune import PruneRun, journal
    from clerksync.kinds.membership import parse_membership
    from clerksync.store.users import writer

    seed(fake_clerk, 3, 2, [0, 1])
    reconciled(cli)
    members = store.collection(MEMBERSHIP)
    before = members.count_documents({})
    mine = [
        copy.deepcopy(m)
        for m in fake_clerk.memberships.values()
        if m["public_user_data"]["user_id"] == "user_m0001"
    ]
    outcomes: list[str] = []
    retry = AfterCommand(
        lambda e: (
            e.command_name == "findAndModify"
            and e.command.get("findAndModify") == ("clerksync_tombstones")
        ),
        lambda: outcomes.extend(
            upsert_outcome(store, MEMBERSHIP, parse_membership(m)) for m in mine
        ),
    )
    pruning = listened(store, retry)
    try:
        run = PruneRun(writer(pruning))
        assert run.prune(USER, ["user_m0001"]) == 1
    finally:
        pruning.client.close()
    assert outcomes == ["duplicate", "duplicate"]
    kinds = [e.get("kind") for e in journal(store).find({"runId": run.run_id})]
    assert sorted(kinds) == ["membership", "membership", "user"]
    undo(cli, run.run_id)
    assert members.count_documents({}) == before
