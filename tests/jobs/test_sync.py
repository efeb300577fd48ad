"""sync-metadata, promote/demote and reconcile against the fake Clerk over HTTP."""

from __future__ import annotations

import json

from clerksync.devtools.payloads import clerk_user
from clerksync.kinds.user import USER, parse_clerk_user
from clerksync.mapping.users import wanted_metadata
from clerksync.store.database import Store
from clerksync.store.lookups import find_user
from clerksync.writeback.queue import queue_of
from tests.conftest import ALL_SCHEMAS
from tests.support.fakeclerk import FakeClerk
from tests.support.writes import page, upsert

FAST = ("--rate", "1000")  # the fake has no limit unless a test sets one


def seed_both(fake: FakeClerk, store: Store, n: int) -> list[str]:
    ids = []
    for i in range(n):
        user = fake.add_user(
            user_id=f"user_s{i:05d}", email=f"s{i}@x.com", created_at=1000 + i, updated_at=5000
        )
        ids.append(user["id"])
    page(store, USER, (parse_clerk_user(fake.users[i]) for i in ids))
    return ids


def settle(fake: FakeClerk, store: Store, ids: list[str]) -> None:
    """Give Clerk the right metadata (plus a key of the app's own) for these users."""
    clerk_id = store.schema.users.clerk_id
    for doc in store.users.find({clerk_id: {"$in": ids}}):
        fake.users[doc[clerk_id]]["public_metadata"] = {
            **wanted_metadata(doc, store.schema.users),
            "plan": "pro",
        }


def test_sync_metadata_batches_reads_and_writes_only_the_drifted(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    ids = seed_both(fake_clerk, store, 1000)
    settle(fake_clerk, store, ids[:750])
    for clerk_id in ids[750:800]:  # drifted but with other keys that must survive
        fake_clerk.users[clerk_id]["public_metadata"] = {"plan": "team"}
    fake_clerk.counts.clear()
    result = cli("sync-metadata", "--json", *FAST)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "total": 1000,
        "updated": 250,
        "unchanged": 750,
        "failed": 0,
        "missing": 0,
    }
    assert fake_clerk.counts["GET /users"] == 10  # 100 ids a request, not one per user
    assert fake_clerk.counts["PATCH /users/{id}/metadata"] == 250
    doc = find_user(store, ids[760])
    assert fake_clerk.users[ids[760]]["public_metadata"] == {
        "plan": "team",
        "userMongoId": str(doc["_id"]),
        "isAdmin": False,
    }
    assert queue_of(store).pending() == 0

    again = json.loads(cli("sync-metadata", "--json", *FAST).stdout)
    assert again["updated"] == 0 and again["unchanged"] == 1000
    assert fake_clerk.counts["PATCH /users/{id}/metadata"] == 250


@ALL_SCHEMAS
def test_dry_run_writes_nothing_and_missing_users_are_reported(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    ids = seed_both(fake_clerk, store, 30)
    upsert(store, USER, parse_clerk_user(clerk_user(user_id="user_only_mongo")))
    result = cli("sync-metadata", "--dry-run", "--json", *FAST)
    summary = json.loads(result.stdout)
    assert summary["updated"] == 30 and summary["missing"] == 1
    assert sorted(summary["would_change"]) == sorted(ids)
    assert fake_clerk.metadata_writes == []


def test_sync_metadata_finishes_through_rate_limits_and_5xx(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    ids = seed_both(fake_clerk, store, 120)
    fake_clerk.instance_limit = 40
    fake_clerk.window = 1.0
    fake_clerk.fail_next(3, status=502)
    result = cli("sync-metadata", "--json", "--rate", "200")  # deliberately too fast: 429s
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["updated"] == 120
    assert fake_clerk.rate_limited > 0
    assert len({u for u, _ in fake_clerk.metadata_writes}) == 120
    assert all("userMongoId" in fake_clerk.users[i]["public_metadata"] for i in ids)


@ALL_SCHEMAS
def test_promote_and_demote_by_every_id_form(cli, store: Store, fake_clerk: FakeClerk) -> None:
    [clerk_id] = seed_both(fake_clerk, store, 1)
    mongo_id = str(find_user(store, clerk_id)["_id"])
    users = store.schema.users
    for ident, value in ((clerk_id, True), (mongo_id, False), ("S0@x.com", True)):
        result = cli("promote" if value else "demote", ident, "--json")
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["clerk"] == "updated"
        doc = find_user(store, clerk_id)
        assert users.is_admin(doc) is value
        assert doc[users.admin.field] == users.admin.stored(value)  # True/False, "admin"/None
        assert fake_clerk.users[clerk_id]["public_metadata"] == wanted_metadata(
            doc, store.schema.users
        )
        assert fake_clerk.users[clerk_id]["public_metadata"]["userMongoId"] == mongo_id


def test_promote_and_demote_say_it_in_plain_words(cli, store: Store, fake_clerk: FakeClerk) -> None:
    """demote said "user_… is now not admin"."""
    [clerk_id] = seed_both(fake_clerk, store, 1)
    promoted, demoted = cli("promote", clerk_id), cli("demote", clerk_id)
    assert f"{clerk_id} (s0@x.com) is now an admin in MongoDB and Clerk." in promoted.stderr
    assert f"{clerk_id} (s0@x.com) is no longer an admin in MongoDB and Clerk." in demoted.stderr
    assert "not admin" not in demoted.stderr


@ALL_SCHEMAS
def test_promote_when_clerk_fails_keeps_mongo_and_exits_1(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    [clerk_id] = seed_both(fake_clerk, store, 1)
    fake_clerk.fail_next(3, status=500)  # promote retries twice, then leaves it queued
    result = cli("promote", clerk_id)
    assert result.exit_code == 1
    assert "sync-metadata" in result.stderr
    assert store.schema.users.is_admin(find_user(store, clerk_id)) is True
    assert queue_of(store).pending() == 1
    assert cli("sync-metadata", "--json", *FAST).exit_code == 0
    assert fake_clerk.users[clerk_id]["public_metadata"]["isAdmin"] is True


def test_promote_unknown_or_ambiguous_changes_nothing(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    upsert(store, USER, parse_clerk_user(clerk_user(user_id="user_a1", email="twin@x.com")))
    upsert(store, USER, parse_clerk_user(clerk_user(user_id="user_a2", email="twin@x.com")))
    unknown = cli("promote", "user_nobody")
    assert unknown.exit_code == 1 and "no user" in unknown.stderr
    twin = cli("promote", "twin@x.com")
    assert twin.exit_code == 1 and "user_a1" in twin.stderr and "user_a2" in twin.stderr
    assert store.users.count_documents({"isAdmin": True}) == 0
    assert fake_clerk.metadata_writes == []


def test_reconcile_creates_updates_leaves_newer_and_reports_orphans(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    for i in range(1200):
        fake_clerk.add_user(user_id=f"user_r{i:05d}", created_at=1000 + i, updated_at=5000)
    stale = [
        parse_clerk_user({**fake_clerk.users[f"user_r{i:05d}"], "updated_at": 10})
        for i in range(100)
    ]
    newer = [
        parse_clerk_user(
            {**fake_clerk.users[f"user_r{i:05d}"], "updated_at": 9000, "first_name": "Newer"}
        )
        for i in range(100, 150)
    ]
    orphans = [parse_clerk_user(clerk_user(user_id=f"user_gone{i}")) for i in range(10)]
    page(store, USER, stale + newer + orphans)
    # one record the SDK's models reject (a SAML account without its required fields)
    odd = clerk_user(user_id="user_saml", created_at=999_999, updated_at=5000)
    odd["saml_accounts"] = [{"id": "samlacc_1", "object": "saml_account"}]
    fake_clerk.add_raw(odd)
    fake_clerk.counts.clear()

    result = cli("reconcile", "--json", *FAST)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {
        k: summary[k]
        for k in ("clerk_users", "created", "updated", "unchanged", "orphaned", "pruned")
    } == {
        "clerk_users": 1201,
        "created": 1051,
        "updated": 100,
        "unchanged": 50,
        "orphaned": 10,
        "pruned": 0,
    }
    assert summary["mongo_users"] == 1211
    # pages of 500, not users, and one lookup confirming the 10 orphan candidates
    assert fake_clerk.counts["GET /users"] == 3 + 1
    assert find_user(store, "user_saml")["clerkId"] == "user_saml"
    assert find_user(store, "user_r00120")["firstName"] == "Newer"
    assert queue_of(store).pending() >= 1051  # new users get their write-back queued

    again = json.loads(cli("reconcile", "--json", *FAST).stdout)
    assert again["created"] == 0 and again["updated"] == 0

    pruned = json.loads(cli("reconcile", "--prune", "--yes", "--json", *FAST).stdout)
    assert pruned["pruned"] == 10
    assert store.users.count_documents({"clerkId": {"$regex": "^user_gone"}}) == 0


def test_reconcile_never_prunes_a_user_deleted_mid_run(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    for i in range(1000):
        fake_clerk.add_user(user_id=f"user_p{i:04d}", created_at=1000 + i)
    assert json.loads(cli("reconcile", "--json", *FAST).stdout)["created"] == 1000

    def delete_one_after_the_first_page(offset: int) -> None:
        if offset == 0:  # user_p0010 is deleted in Clerk mid-run (its webhook not yet in)
            del fake_clerk.users["user_p0010"]
            fake_clerk.version += 1

    fake_clerk.after_page = delete_one_after_the_first_page
    result = cli("reconcile", "--prune", "--yes", "--json", *FAST)
    summary = json.loads(result.stdout)
    # Cursor paging: page 2 starts after the first page's last user whatever went before it
    # (offset paging would have skipped user_p0500).
    assert summary["clerk_users"] == 1000
    assert summary["orphaned"] == 0 and summary["pruned"] == 0, summary
    assert find_user(store, "user_p0500")["clerkId"] == "user_p0500"
    # user_p0010 was listed before it went: this run leaves it to its webhook (or the next).
    fake_clerk.after_page = None
    summary = json.loads(cli("reconcile", "--prune", "--yes", "--json", *FAST).stdout)
    assert summary["orphans"] == ["user_p0010"] and summary["pruned"] == 1
    assert store.users.count_documents({"clerkId": "user_p0010"}) == 0
    assert store.count() == 999


@ALL_SCHEMAS
def test_reconcile_dry_run_changes_nothing(cli, store: Store, fake_clerk: FakeClerk) -> None:
    for i in range(20):
        fake_clerk.add_user(user_id=f"user_d{i}")
    summary = json.loads(cli("reconcile", "--dry-run", "--json", *FAST).stdout)
    assert summary["created"] == 20
    assert store.count() == 0


def test_reconcile_prune_with_json_needs_yes(cli, store: Store, fake_clerk: FakeClerk) -> None:
    result = cli("reconcile", "--prune", "--json")
    assert result.exit_code == 2 and "--yes" in result.stderr


def test_reconcile_prune_asks_first(cli, store: Store, fake_clerk: FakeClerk) -> None:
    fake_clerk.add_user(user_id="user_kept")  # Clerk listing nobody is refused outright
    upsert(store, USER, parse_clerk_user(clerk_user(user_id="user_orphan")))
    result = cli("reconcile", "--prune", input="n\n")
    assert result.exit_code == 0
    assert store.count() == 2


@ALL_SCHEMAS
def test_reconcile_queues_the_write_back_of_a_user_whose_clerk_copy_names_an_old_id(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    # A restored database: Clerk still points at a Mongo id that no longer exists.
    old = {"userMongoId": "0123456789abcdef01234567", "isAdmin": False}
    fake_clerk.add_user(user_id="user_restored", public_metadata=old)
    fake_clerk.add_user(user_id="user_fresh")
    assert json.loads(cli("reconcile", "--json", *FAST).stdout)["created"] == 2
    restored = find_user(store, "user_restored")
    assert "dueAt" in restored["clerksync"] and str(restored["_id"]) != old["userMongoId"]
    assert json.loads(cli("sync-metadata", "--json", *FAST).stdout)["updated"] == 2
    assert fake_clerk.users["user_restored"]["public_metadata"]["userMongoId"] == str(
        restored["_id"]
    )


def test_sync_metadata_says_how_many_a_receiver_was_writing_back(
    cli, store: Store, fake_clerk: FakeClerk
) -> None:
    from datetime import timedelta

    from clerksync.mapping import bookkeeping as bk
    from clerksync.store.mongo import utcnow

    ids = seed_both(fake_clerk, store, 3)  # none has its metadata in Clerk yet
    held = {bk.LEASE_OWNER: "a-receiver", bk.LEASE_UNTIL: utcnow() + timedelta(minutes=5)}
    store.users.update_one({store.schema.users.clerk_id: ids[0]}, {"$set": held})
    result = cli("sync-metadata", *FAST)
    assert result.exit_code == 0, result.stderr
    assert "updated 2" in result.stderr + result.stdout
    assert "busy 1 (a receiver is writing them back now)" in result.stderr + result.stdout
    assert json.loads(cli("sync-metadata", "--json", *FAST).stdout)["busy"] == 1
