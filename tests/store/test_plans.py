"""The plan on the user (and the organization): the slug and status of the payer's current
subscription item, kept right by every item event whatever order they arrive in, and by
the payer's own creation (items that came first count)."""

from __future__ import annotations

import itertools
import json
from typing import Any

from clerksync.devtools.payloads import clerk_user, event
from clerksync.kinds.organization import ORGANIZATION
from clerksync.kinds.registry import BY_NAME
from clerksync.kinds.user import USER, parse_clerk_user
from clerksync.mapping import bookkeeping as bk
from clerksync.mapping.documents import new_document, state_update
from clerksync.mapping.events import parse_event
from clerksync.store import rollups
from clerksync.store.database import Store
from clerksync.store.mongo import utcnow
from tests.conftest import ALL_SCHEMAS
from tests.support.commands import AfterCommand, listened
from tests.support.fakeclerk import clerk_organization
from tests.support.fakelists import clerk_subscription_item
from tests.support.writes import deliver, writer_of

RUN = itertools.count()
LIFE = (("active", "active"), ("pastDue", "past_due"), ("canceled", "canceled"), ("ended", "ended"))


def item(
    item_id: str, status: str, version: int, *, plan: str = "pro", **payer: str
) -> dict[str, Any]:
    event_type = {"past_due": "pastDue"}.get(status, status)
    data = clerk_subscription_item(
        item_id=item_id,
        status=status,
        plan=plan,
        created_at=1000,
        updated_at=1000 * version,
        webhook=True,
        **payer,
    )
    return event(f"subscriptionItem.{event_type}", data)


def signup(user_id: str) -> dict[str, Any]:
    return event("user.created", clerk_user(user_id=user_id, updated_at=500))


def plan_of(store: Store, kind: Any, clerk_id: str) -> tuple[Any, Any]:
    names = store.schema.derived(kind)
    doc = store.collection(kind).find_one({store.key(kind): clerk_id}) or {}
    return doc.get(names.get("plan", "")), doc.get(names.get("plan_status", ""))


@ALL_SCHEMAS
def test_an_item_through_its_life_in_any_order_leaves_its_newest_state_on_the_user(
    store: Store,
) -> None:
    """active -> past_due -> canceled -> ended, delivered in each of the 24 orders, with the
    user's signup at each of the 5 places among them (under the other schemas, which only
    rename, at one place per order, in turn: the suite stays fast)."""
    keeps_status = "plan_status" in store.schema.derived(USER)
    every_place = store.schema.name == "nextjs"
    for n, order in enumerate(itertools.permutations(range(4))):
        for signup_at in range(5) if every_place else (n % 5,):
            run = next(RUN)
            user_id, item_id = f"user_p{run}", f"csub_item_p{run}"
            bodies = [item(item_id, LIFE[i][1], i + 1, user_id=user_id) for i in order]
            bodies.insert(signup_at, signup(user_id))
            outcomes = [deliver(store, body) for body in bodies]
            assert set(outcomes) <= {"applied", "stale"}  # stale: older than what came
            assert plan_of(store, USER, user_id) == ("pro", "ended" if keeps_status else None)


def test_an_upgrade_leaves_the_active_item_whichever_arrives_first(store: Store) -> None:
    """Free, then pro: the free item ends as the pro one becomes active (two items for one
    payer). And a downgrade to come (an upcoming item) leaves the active plan."""
    for first_free in (True, False):
        run = next(RUN)
        user_id = f"user_u{run}"
        free_ended = item(f"csub_item_f{run}", "ended", 3, plan="free", user_id=user_id)
        pro_active = item(f"csub_item_p{run}", "active", 2, plan="pro", user_id=user_id)
        deliver(store, signup(user_id))
        for body in (free_ended, pro_active) if first_free else (pro_active, free_ended):
            deliver(store, body)
        assert plan_of(store, USER, user_id) == ("pro", "active")
        deliver(store, item(f"csub_item_d{run}", "upcoming", 4, plan="free", user_id=user_id))
        assert plan_of(store, USER, user_id) == ("pro", "active")


def test_a_redelivered_item_is_a_duplicate_and_the_plan_holds(store: Store) -> None:
    deliver(store, signup("user_dup"))
    body = item("csub_item_dup", "active", 2, user_id="user_dup")
    assert deliver(store, body) == "applied"
    assert deliver(store, body) == "duplicate"
    assert deliver(store, item("csub_item_dup", "canceled", 1, user_id="user_dup")) == "stale"
    assert plan_of(store, USER, "user_dup") == ("pro", "active")


def test_an_organization_pays_for_itself(store: Store) -> None:
    org = clerk_organization(org_id="org_paying", updated_at=5)
    deliver(store, item("csub_item_org", "past_due", 2, plan="team", org_id="org_paying"))
    deliver(store, event("organization.created", org))
    assert plan_of(store, ORGANIZATION, "org_paying") == ("team", "past_due")
    deliver(store, item("csub_item_org", "active", 3, plan="team", org_id="org_paying"))
    assert plan_of(store, ORGANIZATION, "org_paying") == ("team", "active")


def test_a_subscription_event_applies_the_items_it_carries(store: Store) -> None:
    """``subscription.*`` carries its items, with the payer on the subscription: each is
    stored as that subscription's and that payer's, and the plan follows."""
    from tests.support.objects import subscription

    deliver(store, signup("user_rsubu0"))
    assert deliver(store, subscription("rsub", 0, 2)) == "applied"
    assert deliver(store, subscription("rsub", 0, 2)) == "duplicate"
    stored = store.collection(USER).find_one({"clerkId": "user_rsubu0"}) or {}
    assert (stored.get("plan"), stored.get("planStatus")) == ("plan-v2", "past_due")
    from clerksync.kinds.subscription_item import SUBSCRIPTION_ITEM

    doc = store.collection(SUBSCRIPTION_ITEM).find_one({"clerkId": "csub_item_rsubs0"}) or {}
    assert (doc["subscriptionId"], doc["payerUserId"]) == ("csub_rsubs0", "user_rsubu0")


def test_a_deleted_user_takes_its_items_and_a_late_one_is_stale(store: Store) -> None:
    from clerksync.devtools.payloads import deleted_user
    from clerksync.kinds.subscription_item import SUBSCRIPTION_ITEM

    deliver(store, signup("user_gone"))
    deliver(store, item("csub_item_gone", "active", 1, user_id="user_gone"))
    assert deliver(store, event("user.deleted", deleted_user("user_gone"))) == "applied"
    assert store.collection(SUBSCRIPTION_ITEM).count_documents({"payerUserId": "user_gone"}) == 0
    assert deliver(store, item("csub_item_gone", "canceled", 2, user_id="user_gone")) == "stale"


def test_an_item_before_its_payer_leaves_a_marker_the_signup_reads_with_its_tombstone(
    store: Store,
) -> None:
    """A signup reads its subscription items only when one is waiting: the item that came
    first left a marker, the signup's one tombstone read finds it, takes the plan, and the
    marker goes; the next signup reads no item at all."""
    assert deliver(store, item("csub_item_w1", "active", 1, user_id="user_w1")) == "applied"
    assert store.tombstones.find_one({"_id": rollups.WAITING + "user_w1"}) is not None
    assert store.tombstones.find_one({"_id": "user_w1"}) is None  # a marker, not a deletion
    assert deliver(store, signup("user_w1")) == "applied"
    assert plan_of(store, USER, "user_w1")[0] == "pro"
    assert store.tombstones.find_one({"_id": rollups.WAITING + "user_w1"}) is None
    # A marker never reads as a deletion: the user's later states still apply.
    later = event("user.updated", clerk_user(user_id="user_w1", updated_at=900))
    assert deliver(store, later) == "applied"


def test_a_payer_created_between_the_items_miss_and_its_marker_still_gets_the_plan(
    store: Store,
) -> None:
    """The race the marker leaves: the item's recompute misses (no payer yet), the payer is
    inserted and reads its tombstone before the marker is written, so it sees none. The
    item's second recompute, after the marker, finds the payer, and removes the marker
    (nothing would read it again). Driven step by step through the real functions, in that
    order."""
    kind = BY_NAME["subscription item"]
    body = item("csub_item_r1", "active", 1, user_id="user_r1")
    stored = parse_event(json.dumps(body).encode(), store.schema).item
    # the item stored as the write path stores it, its recompute done by hand below
    section = store.schema.section(kind)
    store.collection(kind).insert_one(new_document(state_update(kind, section, stored, utcnow())))
    (rollup,) = [r for r in kind.rollups if r.parent == "user"]
    assert rollups._apply(store, kind, rollup, {"user_r1"}, only_found=False) == {"user_r1"}
    assert deliver(store, signup("user_r1")) == "applied"  # no marker yet: reads no item
    assert plan_of(store, USER, "user_r1")[0] is None
    rollups._mark_missing(store, kind, rollup, {"user_r1"})
    assert plan_of(store, USER, "user_r1")[0] == "pro"
    assert store.tombstones.find_one({"_id": rollups.WAITING + "user_r1"}) is None


def test_no_marker_outlives_its_payer(store: Store) -> None:
    """A marker is read once: the payer's creation removes it (even when its items went
    before), a deleted payer's is removed with it, and an item for a deleted payer leaves
    none (nothing would ever read it)."""
    gone = rollups.WAITING + "user_m1"
    assert deliver(store, item("csub_item_m1", "active", 1, user_id="user_m1")) == "applied"
    assert store.tombstones.find_one({"_id": gone}) is not None
    writer_of(store).delete(BY_NAME["subscription item"], "csub_item_m1")
    assert deliver(store, signup("user_m1")) == "applied"  # its item went before it came
    assert store.tombstones.find_one({"_id": gone}) is None
    # a payer deleted while its marker waits takes the marker with it
    assert deliver(store, item("csub_item_m2", "active", 1, user_id="user_m2")) == "applied"
    writer_of(store).delete(USER, "user_m2")
    assert store.tombstones.find_one({"_id": rollups.WAITING + "user_m2"}) is None
    # and an item for a deleted payer leaves none (the payer's tombstone refuses it, and a
    # recompute that misses a deleted payer writes no marker)
    assert deliver(store, item("csub_item_m3", "active", 1, user_id="user_m2")) in (
        "applied",
        "stale",
    )
    assert store.tombstones.find_one({"_id": rollups.WAITING + "user_m2"}) is None


def test_a_recompute_after_a_delete_never_undoes_a_newer_items_plan(store: Store) -> None:
    """An item's delete recomputes its payer's plan from what is left. A new item of the
    payer written between that recompute's read and its update lands its own recompute
    first: the delete's update, computed without it, must not leave the payer without the
    new item's plan."""
    kind = BY_NAME["subscription item"]
    deliver(store, signup("user_del"))
    old = item("csub_item_old", "active", 1, plan="free", user_id="user_del")
    assert deliver(store, old) == "applied"
    name = store.collection(kind).name

    def payers_read(event: Any) -> bool:  # the recompute's read, not the delete's own
        found = event.command.get("find") == name
        return found and "$in" in json.dumps(event.command.get("filter"), default=str)

    def new_item_lands() -> None:
        new = item("csub_item_new", "active", 2, plan="pro", user_id="user_del")
        assert deliver(store, new) == "applied"
        assert plan_of(store, USER, "user_del") == ("pro", "active")

    turn = AfterCommand(payers_read, new_item_lands)
    own = listened(store, turn)
    try:
        assert writer_of(own).delete(kind, "csub_item_old").outcome == "applied"
    finally:
        own.client.close()
    assert turn.done
    assert plan_of(store, USER, "user_del") == ("pro", "active")


def test_an_items_update_racing_a_delete_of_another_item_leaves_what_is_stored(
    store: Store,
) -> None:
    """A prune deletes item A while a delivery updates item B of the same payer: B's
    recompute read A, then A's delete (and its recompute) landed before B's update. That
    update must not put back the plan A gave: the payer ends as B alone says."""
    kind = BY_NAME["subscription item"]
    deliver(store, signup("user_race"))
    assert deliver(store, item("csub_item_a", "active", 1, plan="pro", user_id="user_race"))
    assert deliver(store, item("csub_item_b", "ended", 2, plan="free", user_id="user_race"))
    assert plan_of(store, USER, "user_race") == ("pro", "active")
    name = store.collection(kind).name

    def payers_read(event: Any) -> bool:
        found = event.command.get("find") == name
        return found and "$in" in json.dumps(event.command.get("filter"), default=str)

    def prune_deletes_a() -> None:
        assert writer_of(store).delete(kind, "csub_item_a").outcome == "applied"

    turn = AfterCommand(payers_read, prune_deletes_a)
    own = listened(store, turn)
    try:
        update = item("csub_item_b", "ended", 3, plan="free", user_id="user_race")
        assert deliver(own, update) == "applied"
    finally:
        own.client.close()
    assert turn.done
    assert plan_of(store, USER, "user_race") == ("free", "ended")


def test_a_token_an_earlier_clerksync_wrote_is_matched_and_replaced(store: Store) -> None:
    """A payer whose plan an earlier clerksync recomputed holds a sum of versions as its
    token: the next recompute matches it like any token, writes the plan, and a token of
    its own."""
    deliver(store, signup("user_old"))
    token = rollups.token_field(BY_NAME["subscription item"])
    store.users.update_one({store.key(USER): "user_old"}, {"$set": {token: 3000}})
    assert deliver(store, item("csub_item_old1", "active", 4, user_id="user_old")) == "applied"
    assert plan_of(store, USER, "user_old") == ("pro", "active")
    doc = store.users.find_one({store.key(USER): "user_old"})
    assert doc is not None and not isinstance(bk.field(doc, token), int)


def test_a_payer_with_no_item_costs_its_creation_no_token_read(
    store: Store, watched: tuple[Store, Any]
) -> None:
    """A redelivered signup recomputes the plan of a payer it may have created: while no
    item names the payer, that is one read of the items, not a read of the payer's token."""
    own, listener = watched
    user = parse_clerk_user(clerk_user(user_id="user_plain", updated_at=5))
    assert writer_of(own).upsert(USER, user, likely_new=True).outcome == "applied"
    listener.sent.clear()
    assert writer_of(own).upsert(USER, user, likely_new=True).outcome == "duplicate"
    reads = [command["find"] for name, command in listener.sent if name == "find"]
    assert reads.count(store.users.name) == 1  # the duplicate's own version read


@ALL_SCHEMAS
def test_what_a_job_wrote_is_what_the_recompute_would_read(store: Store) -> None:
    """A first fill's guess takes the items its pages wrote (``views_of_items``) instead of
    reading them back: for each payer, the same objects the read returns, field for field,
    under every schema (a user's items, an organization's, one with no payer)."""
    kind = BY_NAME["subscription item"]
    payloads = [
        clerk_subscription_item(item_id="csub_item_v1", user_id="user_v", plan="team"),
        clerk_subscription_item(item_id="csub_item_v2", user_id="user_v", status="ended"),
        clerk_subscription_item(item_id="csub_item_v3", org_id="org_v", status="past_due"),
        clerk_subscription_item(item_id="csub_item_v4", user_id=None),
    ]
    items = [kind.parse(p) for p in payloads]
    now = utcnow()
    section = store.schema.section(kind)
    docs = [new_document(state_update(kind, section, i, now)) for i in items]
    store.ready(kind)
    store.collection(kind).insert_many(docs)
    wrote = rollups.views_of_items(store, kind, items)
    for rollup in kind.rollups:
        ids = set(wrote.get(rollup.parent, {}))
        assert ids  # both payer kinds are named
        read = rollups._objects(store, kind, rollup, ids)
        key = "clerk_id"
        assert {p: sorted(v, key=lambda x: x[key]) for p, v in read.items()} == {
            p: sorted(v, key=lambda x: x[key]) for p, v in wrote[rollup.parent].items()
        }


def test_payers_stored_beside_their_markers_are_answered_by_the_sweep(store: Store) -> None:
    """Items came before their payers (markers); each payer's document is there, but the
    writer that inserted it stopped before reading its marker. ``stored_waiting`` names them,
    users and organizations alike (none while the markers are younger than ``before``), and
    ``answer_stored`` (reconcile's sweep) gives them their plans and removes the markers."""
    from datetime import timedelta

    deliver(store, item("csub_item_w1", "active", 1, user_id="user_w"))
    deliver(store, item("csub_item_w2", "past_due", 1, plan="team", org_id="org_w"))
    store.users.insert_one({store.key(USER): "user_w"})  # what the stopped inserts left
    store.collection(ORGANIZATION).insert_one({store.key(ORGANIZATION): "org_w"})
    assert store.tombstones.count_documents(rollups.MARKERS) == 2

    assert rollups.stored_waiting(store, before=utcnow() - timedelta(hours=1)) == {}
    assert rollups.stored_waiting(store) == {"organization": ["org_w"], "user": ["user_w"]}
    rollups.answer_stored(store)
    assert plan_of(store, USER, "user_w") == ("pro", "active")
    assert plan_of(store, ORGANIZATION, "org_w") == ("team", "past_due")
    assert store.tombstones.count_documents(rollups.MARKERS) == 0
    assert rollups.stored_waiting(store) == {}
