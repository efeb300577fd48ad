"""The delivery log names the object of every event type (`objectId`), not only users."""

from __future__ import annotations

import json

from clerksync.store.database import Store
from tests.conftest import WEBHOOK_SECRET
from tests.support.examples import EXAMPLES_FILE
from tests.support.receiver import RunningReceiver, post

EXAMPLES = json.loads(EXAMPLES_FILE.read_text())["events"]


def test_events_list_shows_the_object_id_of_every_type(
    cli, receiver: RunningReceiver, store: Store
) -> None:
    for name, body in EXAMPLES.items():
        assert post(receiver.url, WEBHOOK_SECRET, body, msg_id=f"msg_{name}").status_code == 200
    receiver.receiver.log.flush_now()
    rows = {r["type"]: r for r in json.loads(cli("events", "list", "--json").stdout)}
    assert set(rows) == set(EXAMPLES)
    for name, body in EXAMPLES.items():
        assert rows[name]["objectId"] == body["data"]["id"], name
    member = rows["organizationMembership.updated"]
    assert member["userId"] == EXAMPLES[member["type"]]["data"]["public_user_data"]["user_id"]
    human = cli("events", "list", "--type", "organization.created")
    assert EXAMPLES["organization.created"]["data"]["id"] in human.stdout
