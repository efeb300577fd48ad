"""One prune run journals users, organizations, memberships and their cascades; undo puts
them all back. Real wire server, the fake Clerk over HTTP, the CLI as a user runs it."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import timedelta
from typing import Any

from clerksync.jobs.prune import PruneRun, journal
from clerksync.jobs.undo import undo_prune
from clerksync.kinds.membership import MEMBERSHIP, parse_membership
from clerksync.kinds.organization import ORGANIZATION, parse_organization
from clerksync.kinds.registry import KINDS
from clerksync.kinds.user import USER
from clerksync.store.database import Store
from clerksync.store.mongo import utcnow
from tests.conftest import ALL_SCHEMAS
from tests.support.fakeclerk import FakeClerk, clerk_membership, clerk_organization
from tests.support.writes import delete, upsert_outcome, writer_of

FAST = ("--rate", "1000")
NOTHING = {
    "restored": 0,
    "present": 0,
    "tombstones_removed": 0,
    "deleted_since": 0,
    "already_undone": 0,
    "waiting": 0,
}


def kind_counts(**given: int) -> dict[str, int]:
    """One kind's part of an undo report: ``given``, and 0 for every other count."""
    return {**NOTHING, **given}


def seed(fake: FakeClerk, users: int, orgs: int, members: list[int]) -> None:
    """``users`` users; ``orgs`` organizations, each with the users in ``members``."""
    for u in range(users):
        fake.add_user(user_id=f"user_m{u:04d}", email=f"m{u}@example.com", created_at=1000 + u)
    for o in range(orgs):
        fake.add_org(org_id=f"org_p{o:04d}", name=f"Org {o}", created_at=100 + o, updated_at=500)
        for u in members:
            fake.add_membership(
                f"org_p{o:04d}",
                f"user_m{u:04d}",
                membership_id=f"orgmem_p{o:04d}_{u:03d}",
                created_at=2000 + o * 10 + u,
                updated_at=500,
            )


def drop_user(fake: FakeClerk, user_id: str) -> None:
    """Delete a user in Clerk: its memberships go with it, as Clerk does."""
    with fake.lock:
        del fake.users[user_id]
        for mem_id, member in list(fake.memberships.items()):
            if member["public_user_data"]["user_id"] == user_id:
                del fake.memberships[mem_id]
        fake.version += 1


def snapshot(store: Store) -> dict[str, Any]:
    """Every document of the three collections by ``_id``, and the tombstones' ids."""
    return {
        "users": {d["_id"]: d for d in store.users.find({})},
        "organizations": {d["_id"]: d for d in store.collection(ORGANIZATION).find({})},
        "memberships": {d["_id"]: d for d in store.collection(MEMBERSHIP).find({})},
        "tombstones": sorted(t["_id"] for t in store.tombstones.find({})),
    }


def reconciled(cli) -> dict[str, Any]:
    result = cli("reconcile", "--json", *FAST)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_a_pruned_organization_and_its_memberships_come_back(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    seed(fake_clerk, 3, 12, [0, 1])
    reconciled(cli)
    before = snapshot(store)
    fake_clerk.remove_org("org_p0003")  # and, as Clerk does, its two memberships

    pruned = cli("reconcile", "--prune", "--yes", *FAST)
    assert pruned.exit_code == 0, pruned.stderr
    found = re.search(r"--undo-prune (prune-\S+)`", pruned.stderr)
    assert found, pruned.stderr  # only organizations were pruned: the undo is still offered
    run = found.group(1)
    assert store.collection(ORGANIZATION).count_documents({}) == 11
    assert store.collection(MEMBERSHIP).count_documents({}) == 22
    assert store.tombstones.count_documents({}) == 3

    undone = cli("reconcile", "--undo-prune", run, "--json")
    assert undone.exit_code == 0, undone.stderr
    assert json.loads(undone.stdout) == {
        "run": run,
        "restored": 3,
        "present": 0,
        "tombstones_removed": 3,
        "deleted_since": 0,
        "already_undone": 0,
        "waiting": 0,
        **{kind.plural: NOTHING for kind in KINDS},
        "organizations": kind_counts(restored=1, tombstones_removed=1),
        "memberships": kind_counts(restored=2, tombstones_removed=2),
    }
    assert snapshot(store) == before  # same _ids, same fields, no tombstone left

    # Undo twice: nothing more happens, and it says so.
    twice = cli("reconcile", "--undo-prune", run, "--json")
    assert twice.exit_code == 0, twice.stderr
    again = json.loads(twice.stdout)
    # settled by the first: nothing is put back or removed again
    assert (again["restored"], again["present"], again["tombstones_removed"]) == (0, 0, 0)
    assert again["already_undone"] == 3
    assert again["organizations"]["already_undone"] == 1
    assert again["memberships"]["already_undone"] == 2
    human = cli("reconcile", "--undo-prune", run)
    assert "restored nothing; 0 were back" in human.stderr
    assert "3 undone by an earlier --undo-prune" in human.stderr
    assert snapshot(store) == before


@ALL_SCHEMAS
def test_a_pruned_user_brings_its_memberships_back(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    seed(fake_clerk, 20, 3, [1, 2])
    reconciled(cli)
    before = snapshot(store)
    drop_user(fake_clerk, "user_m0001")

    summary = json.loads(cli("reconcile", "--prune", "--yes", "--json", *FAST).stdout)
    assert summary["pruned"] == 1
    # the user's cascade takes them (journaled with it): no memberships' orphans
    assert summary["memberships"]["orphaned"] == 0 and summary["memberships"]["pruned"] == 0
    assert store.collection(MEMBERSHIP).count_documents({}) == 3
    entries = list(journal(store).find({"runId": summary["prune_run"]}))
    assert sorted((e["kind"], e.get("via")) for e in entries) == [
        ("membership", "user_m0001"),
        ("membership", "user_m0001"),
        ("membership", "user_m0001"),
        ("user", None),
    ]

    undone = json.loads(cli("reconcile", "--undo-prune", summary["prune_run"], "--json").stdout)
    assert undone["users"] == kind_counts(restored=1, tombstones_removed=1)
    assert undone["memberships"] == kind_counts(restored=3)
    assert (undone["restored"], undone["tombstones_removed"]) == (4, 1)
    assert snapshot(store) == before


def test_a_dry_run_journals_nothing_and_one_run_covers_every_kind(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    seed(fake_clerk, 20, 12, [0])
    for org in ("org_p0005", "org_p0007"):
        fake_clerk.add_membership(org, "user_m0001", membership_id=f"orgmem_{org}_one")
    reconciled(cli)
    before = snapshot(store)
    drop_user(fake_clerk, "user_m0001")  # a user with two memberships, and…
    fake_clerk.remove_org("org_p0005")  # …an organization with one more go

    dry = cli("reconcile", "--prune", "--dry-run", "--json", *FAST)
    assert dry.exit_code == 0, dry.stderr
    preview = json.loads(dry.stdout)
    assert preview["orphaned"] == 1 and preview["organizations"]["orphaned"] == 1
    assert preview["prune_run"] is None
    assert journal(store).count_documents({}) == 0
    assert snapshot(store) == before

    real = json.loads(cli("reconcile", "--prune", "--yes", "--json", *FAST).stdout)
    run = real["prune_run"]
    assert journal(store).distinct("runId") == [run]  # one run for the whole reconcile
    kinds = Counter((e["kind"], bool(e.get("via"))) for e in journal(store).find({}))
    # the user, its 2 memberships (cascade, org 5's included), org 5's other membership
    # (an orphan of its own), and org 5 itself
    assert kinds == {
        ("user", False): 1,
        ("membership", True): 2,
        ("membership", False): 1,
        ("organization", False): 1,
    }
    undone = json.loads(cli("reconcile", "--undo-prune", run, "--json").stdout)
    assert undone["restored"] == 5 and undone["present"] == 0
    assert snapshot(store) == before


def test_an_organization_cascade_is_journaled_beyond_one_lot(store: Store) -> None:
    big = clerk_organization(org_id="org_big", updated_at=100)
    other = clerk_organization(org_id="org_other", updated_at=100)
    for org in (big, other):
        upsert_outcome(store, ORGANIZATION, parse_organization(org))
    for n in range(60):  # more than one lot of the cascade (IN_CHUNK)
        member = clerk_membership(org=big, user_id=f"user_b{n:03d}", membership_id=f"orgmem_b{n}")
        upsert_outcome(store, MEMBERSHIP, parse_membership(member))
    upsert_outcome(
        store,
        MEMBERSHIP,
        parse_membership(
            clerk_membership(org=other, user_id="user_b000", membership_id="orgmem_o")
        ),
    )
    # A tombstone the run does not write (an earlier delete that did not finish): kept.
    store.tombstones.insert_one({"_id": "org_big", "deletedAt": utcnow(), "kind": "organization"})
    before = snapshot(store)

    run = PruneRun(writer_of(store))
    assert run.prune(ORGANIZATION, ["org_big"]) == 1
    assert store.collection(MEMBERSHIP).count_documents({}) == 1
    entries = list(journal(store).find({"runId": run.run_id}))
    assert Counter(e["kind"] for e in entries) == {"organization": 1, "membership": 60}
    assert all(e["via"] == "org_big" for e in entries if e["kind"] == "membership")
    assert [e["hadTombstone"] for e in entries if e["kind"] == "organization"] == [True]

    report = undo_prune(store, run.run_id)
    assert report["organizations"] == kind_counts(restored=1)
    assert report["memberships"] == kind_counts(restored=60)
    assert snapshot(store) == before  # the tombstone the run found is still there


def test_an_entry_from_before_kinds_undoes_as_a_user(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    fake_clerk.add_user(user_id="user_old")
    reconciled(cli)
    doc = store.users.find_one({"clerkId": "user_old"})
    # What the journal held before organizations were journaled: no kind, no via.
    now = utcnow()
    journal(store).insert_one(
        {
            "runId": "prune-20261101T000000Z-0a0a",
            "clerkId": "user_old",
            "document": doc,
            "hadTombstone": False,
            "prunedAt": now,
            "expiresAt": now + timedelta(days=30),
        }
    )
    delete(store, USER, "user_old")
    assert store.count() == 0

    undone = cli("reconcile", "--undo-prune", "prune-20261101T000000Z-0a0a", "--json")
    assert undone.exit_code == 0, undone.stderr
    report = json.loads(undone.stdout)
    assert report["users"] == kind_counts(restored=1, tombstones_removed=1)
    assert report["organizations"] == NOTHING and report["memberships"] == NOTHING
    assert store.users.find_one({"clerkId": "user_old"}) == doc
    assert store.tombstones.count_documents({}) == 0


def test_an_app_index_refusing_a_restored_organization_is_a_failure(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    seed(fake_clerk, 20, 12, [])
    reconciled(cli)
    store.collection(ORGANIZATION).create_index("name", unique=True, name="app_org_name")
    drop_user(fake_clerk, "user_m0004")
    fake_clerk.remove_org("org_p0003")
    run = json.loads(cli("reconcile", "--prune", "--yes", "--json", *FAST).stdout)["prune_run"]
    # Meanwhile the app made another organization with the pruned one's name.
    newcomer = clerk_organization(org_id="org_newcomer", name="Org 3")
    upsert_outcome(store, ORGANIZATION, parse_organization(newcomer))

    refused = cli("reconcile", "--undo-prune", run, "--json")
    assert refused.exit_code == 1
    assert "app_org_name" in refused.stderr and "Traceback" not in refused.stderr
    assert "rerun the same --undo-prune" in refused.stderr, refused.stderr
    assert refused.stderr.count("\n") == 1  # one line
    # The rest is back; the refused organization stays gone, its tombstone kept.
    assert store.users.count_documents({"clerkId": "user_m0004"}) == 1
    assert store.collection(ORGANIZATION).count_documents({"clerkId": "org_p0003"}) == 0
    assert store.tombstones.distinct("_id") == ["org_p0003"]

    store.collection(ORGANIZATION).delete_one({"clerkId": "org_newcomer"})  # the operator's fix
    fixed = json.loads(cli("reconcile", "--undo-prune", run, "--json").stdout)
    assert fixed["organizations"] == kind_counts(restored=1, tombstones_removed=1)
    assert fixed["users"]["already_undone"] == 1  # settled by the first call
    assert store.tombstones.count_documents({}) == 0


def test_the_preview_and_the_run_leave_the_user_cascades_memberships_to_the_users_guard(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    """A pruned user's memberships go with it and count under the users' guard, the same in
    the preview, the question and the run: one user among many is no mass prune, even when it
    held every membership (Clerk then lists none)."""
    seed(fake_clerk, 20, 12, [1])
    reconciled(cli)
    drop_user(fake_clerk, "user_m0001")  # all 12 memberships go with the user

    dry = json.loads(cli("reconcile", "--prune", "--dry-run", "--json", *FAST).stdout)
    assert dry["orphaned"] == 1 and dry["memberships"]["orphaned"] == 0
    assert dry["prune_refused"] is None and "prune_refused" not in dry["memberships"]
    asked = cli("reconcile", "--prune", *FAST, input="y\n")
    assert asked.exit_code == 0, asked.stderr
    assert "Delete 1 user from MongoDB" in asked.stderr
    assert store.collection(MEMBERSHIP).count_documents({}) == 0
    entries = journal(store).find({"kind": "membership"})
    assert sorted(e["via"] for e in entries) == ["user_m0001"] * 12


def test_a_user_back_under_a_new_id_is_present_whichever_index_is_named(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    seed(fake_clerk, 20, 1, [])
    reconciled(cli)
    # the app's unique index, named so that this server reports it before clerksync's
    store.users.create_index("email", unique=True, name="aaa_email")
    drop_user(fake_clerk, "user_m0004")
    run = json.loads(cli("reconcile", "--prune", "--yes", "--json", *FAST).stdout)["prune_run"]
    # a copy of the user comes back meanwhile, as a new document (its own new _id)
    doc = dict(journal(store).find_one({"runId": run, "kind": "user"})["document"])
    doc.pop("_id")
    store.users.insert_one(doc)

    undone = cli("reconcile", "--undo-prune", run, "--json")
    assert undone.exit_code == 0, undone.stderr
    report = json.loads(undone.stdout)
    assert report["users"] == kind_counts(present=1, tombstones_removed=1)
