"""Property, over HTTP with signed deliveries, for every kind the registry has: any
interleaving of their events, with duplicates, ends in each object's newest state; each
delivery is answered as the one write path decides (``applied``, ``duplicate`` for the same
state again, ``stale`` for an older one or a deleted object, ``ignored`` for a kind the app
does not keep); a delete is final and leaves a tombstone, and a parent's delete takes what
belongs to it, so no late event resurrects either. The payer's plan follows its item's
newest state, whatever the order.

One test over ``clerksync.kinds.registry.KINDS``: each kind's events come from
``tests/support/objects.py``, and a kind without a builder there fails it."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clerksync.clerk.tls import tls_context
from clerksync.kinds.registry import BY_NAME, KINDS
from clerksync.kinds.user import USER
from clerksync.mapping import bookkeeping as bk
from clerksync.store.database import Store
from tests.conftest import WEBHOOK_SECRET
from tests.support.objects import BUILDERS, object_id, subscription
from tests.support.receiver import RunningReceiver, post

RUN = itertools.count()

#: (kind, index, version or None for its delete, carried by a subscription event)
Delivery = tuple[str, int, Any, bool]


def deliveries_of(name: str) -> st.SearchStrategy[Delivery]:
    builder = BUILDERS[name]
    versions: st.SearchStrategy[Any] = st.integers(1, 3)
    if builder.delete is not None:
        versions = st.one_of(st.none(), versions)
    carried = st.booleans() if BY_NAME[name].parse_carrier is not None else st.just(False)
    return st.tuples(st.just(name), st.integers(0, builder.count - 1), versions, carried)


delivery = st.one_of(*(deliveries_of(name) for name in BUILDERS))


def test_every_kind_has_a_builder() -> None:
    assert set(BUILDERS) == {kind.name for kind in KINDS}


class Model:
    """What the one write path must do: each object's stored version, the tombstones."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.stored: dict[tuple[str, int], int] = {}
        self.tombstoned: set[tuple[str, int]] = set()

    def dead(self, kind: str, index: int) -> bool:
        parents = BUILDERS[kind].parents(index)
        return (kind, index) in self.tombstoned or any(p in self.tombstoned for p in parents)

    def apply(self, kind: str, index: int, version: int | None) -> str:
        if not self.store.stores(BY_NAME[kind]):
            return "ignored"
        key = (kind, index)
        if version is None:
            if key in self.tombstoned:
                return "duplicate"
            self.tombstoned.add(key)
            for obj in list(self.stored):  # itself, and what names it as a parent
                if obj == key or key in BUILDERS[obj[0]].parents(obj[1]):
                    del self.stored[obj]
            return "applied"
        if self.dead(kind, index):
            return "stale"
        held = self.stored.get(key)
        if held == version:
            return "duplicate"
        if held is not None and held > version:
            return "stale"
        self.stored[key] = version
        return "applied"


def body(run: str, kind: str, index: int, version: int | None, carried: bool) -> dict[str, Any]:
    builder = BUILDERS[kind]
    if version is None:
        assert builder.delete is not None
        return builder.delete(run, index)
    if carried:
        return subscription(run, index, version)
    return builder.state(run, index, version)


@settings(
    max_examples=45, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(deliveries=st.lists(delivery, min_size=1, max_size=24))
def test_every_kind_ends_in_its_newest_state_and_deletes_are_final(
    receiver: RunningReceiver, store: Store, deliveries: list[Delivery]
) -> None:
    run = f"r{next(RUN)}"
    model = Model(store)
    with httpx.Client(timeout=30, verify=tls_context()) as client:
        for kind, index, version, carried in deliveries:
            answer = post(
                receiver.url,
                WEBHOOK_SECRET,
                body(run, kind, index, version, carried),
                client=client,
            )
            assert answer.status_code == 200, answer.text
            want = model.apply(kind, index, version)
            assert answer.json()["outcome"] == want, (kind, index, version, deliveries)

    for name, builder in BUILDERS.items():
        kind = BY_NAME[name]
        if not store.stores(kind):
            continue
        for index in range(builder.count):
            clerk_id = object_id(name, run, index)
            docs = list(store.collection(kind).find({store.key(kind): clerk_id}))
            want = model.stored.get((name, index))
            assert len(docs) == (0 if want is None else 1), (name, index, deliveries)
            if want is not None:
                assert bk.field(docs[0], bk.UPDATED_AT) == 1000 * want
            if (name, index) in model.tombstoned:
                assert store.is_tombstoned(clerk_id)
    check_plans(store, run, model)


def check_plans(store: Store, run: str, model: Model) -> None:
    """Each payer's plan is its item's newest state (none without one)."""
    names = store.schema.derived(USER)
    for payer_kind, payer_index, item_index in (("user", 0, 0), ("organization", 1, 1)):
        kind = BY_NAME[payer_kind]
        names = store.schema.derived(kind)
        payer_id = object_id(payer_kind, run, payer_index)
        doc = store.collection(kind).find_one({store.key(kind): payer_id})
        if doc is None or not names:
            continue
        version = model.stored.get(("subscription item", item_index))
        status = (
            None
            if version is None
            else ("active", "past_due", "canceled", "ended")[(version - 1) % 4]
        )
        plan = None if version is None else f"plan-v{version}"
        assert doc.get(names["plan"]) == plan, (payer_kind, doc)
        if "plan_status" in names:
            assert doc.get(names["plan_status"]) == status
