"""Property: any interleaving of a user's deliveries, with duplicates, ends in the state of
that user's newest event (a delete is final: Clerk never reuses an id)."""

from __future__ import annotations

import itertools
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clerksync.devtools.payloads import clerk_user, deleted_user, event
from clerksync.mapping.events import parse_event
from clerksync.store.apply import apply_event
from clerksync.store.database import Store
from tests.support.writes import writer_of

RUN = itertools.count()

# (user index, version); version None is the delete
delivery = st.tuples(st.integers(0, 2), st.one_of(st.none(), st.integers(1, 4)))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(deliveries=st.lists(delivery, min_size=1, max_size=14))
def test_final_state_is_each_users_newest_event(store: Store, deliveries: list) -> None:
    run = next(RUN)
    for user, version in deliveries:
        user_id = f"user_r{run}u{user}"
        if version is None:
            body = event("user.deleted", deleted_user(user_id))
        else:
            kind = "user.created" if version == 1 else "user.updated"
            body = event(
                kind,
                clerk_user(
                    user_id=user_id,
                    first_name=f"v{version}",
                    updated_at=1_000 * version,
                    created_at=1_000,
                ),
            )
        apply_event(writer_of(store), parse_event(json.dumps(body).encode()))

    for user in range(3):
        user_id = f"user_r{run}u{user}"
        mine = [v for u, v in deliveries if u == user]
        docs = list(store.users.find({"clerkId": user_id}))
        if not mine or None in mine:
            assert docs == []
        else:
            assert len(docs) == 1
            assert docs[0]["firstName"] == f"v{max(mine)}"
            assert docs[0]["clerksync"]["updatedAt"] == 1_000 * max(mine)
