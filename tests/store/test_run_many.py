"""``apply_events`` (``Writer.run_many``): events that came together, applied from one
thread with their writes sent together, each answered as ``apply_event`` would answer it
alone: its own outcome, or its own error, whatever the others in the batch did."""

from __future__ import annotations

import json
from typing import Any

from clerksync.devtools.payloads import clerk_user, event
from clerksync.errors import IndexRefused
from clerksync.mapping.events import parse_event
from clerksync.store.apply import apply_event, apply_events
from clerksync.store.database import Store
from tests.support.writes import writer_of


def parsed(store: Store, kind: str, data: dict[str, Any]) -> Any:
    return parse_event(json.dumps(event(kind, data)).encode(), store.schema)


def user(user_id: str, at: int, username: str | None = None) -> dict[str, Any]:
    data = clerk_user(user_id=user_id, username=username or user_id.replace("_", ""))
    return {**data, "updated_at": at}


def test_each_event_of_a_batch_gets_its_own_answer(watched: tuple[Store, Any]) -> None:
    store, commands = watched
    store.users.create_index("username", unique=True)  # the app's own
    writer = writer_of(store)
    for stored in (user("user_a", 2), user("user_b", 2, "taken"), user("user_d", 2)):
        assert apply_event(writer, parsed(store, "user.created", stored)) == ("applied", True)
    commands.sent.clear()

    batch = [
        parsed(store, "user.created", user("user_c", 1)),
        parsed(store, "user.created", user("user_c", 1)),  # the same, in the same batch
        parsed(store, "user.updated", user("user_a", 3)),
        parsed(store, "user.updated", user("user_a", 1)),  # older than what is stored
        parsed(store, "user.updated", user("user_e", 1, "taken")),  # the app's index refuses
        parsed(store, "session.created", {"id": "sess_1", "user_id": "user_a"}),
        parsed(store, "user.deleted", {"id": "user_d", "deleted": True, "object": "user"}),
    ]
    answers = apply_events(writer, batch)

    assert sorted(answers[:2]) == [("applied", True), ("duplicate", False)]
    assert answers[2] == ("applied", True)
    assert answers[3] == ("stale", False)
    assert isinstance(answers[4], IndexRefused) and answers[4].index == "username_1"
    assert answers[5] == ("ignored", False)
    assert answers[6] == ("applied", False)
    # what the batch left: each as it would have been alone
    assert store.users.count_documents({"clerkId": "user_c"}) == 1
    a = store.users.find_one({"clerkId": "user_a"})
    assert a is not None and a["clerksync"]["updatedAt"] == 3
    assert store.users.find_one({"clerkId": "user_e"}) is None
    assert store.users.find_one({"clerkId": "user_d"}) is None
    assert store.tombstones.find_one({"_id": "user_d"}) is not None
    # the batch's first writes went together: one insert for both new users
    inserts = [c for name, c in commands.sent if name == "insert" and c["insert"] == "users"]
    assert len(inserts[0]["documents"]) == 2
