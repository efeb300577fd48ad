"""``ignores``: the receiver answers an event without a thread or the database when nothing
of it is kept. It must agree with the write path on every documented event, or the
receiver would skip something the write path stores."""

from __future__ import annotations

import json

from clerksync.mapping.events import parse_event
from clerksync.store.apply import apply_event, ignores
from clerksync.store.database import Store
from tests.conftest import ALL_SCHEMAS
from tests.support.examples import EXAMPLES_FILE
from tests.support.writes import writer_of

EXAMPLES = json.loads(EXAMPLES_FILE.read_text())["events"]


@ALL_SCHEMAS
def test_ignores_exactly_what_the_write_path_ignores(store: Store) -> None:
    writer = writer_of(store)
    skipped = []
    for name, body in EXAMPLES.items():
        event = parse_event(json.dumps(body).encode(), store.schema)
        outcome, _ = apply_event(writer, event)
        assert ignores(store, event) == (outcome == "ignored"), (name, outcome)
        if outcome == "ignored":
            skipped.append(name)
    # Both sides of the rule are exercised under every schema.
    assert "session.created" in skipped and "user.created" not in skipped
