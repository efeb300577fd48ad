"""What end users type reaches the database, never a refusal: numbers JSON allows but Python
would not parse, non-finite numbers, and text past the stored limit.

Signed by the svix library, through the real receiver over loopback, read back by the real
CLI. Each test is one of issue 19's findings, and fails without its fix.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from clerksync.devtools.payloads import clerk_user, event
from clerksync.kinds.base import MAX_TEXT
from clerksync.receiver.logs import JsonLines
from clerksync.store.database import Store
from clerksync.store.lookups import find_user
from tests.conftest import WEBHOOK_SECRET
from tests.support.output import strict_json
from tests.support.receiver import RunningReceiver, post


def body_with(user_id: str, placeholder_value: bytes, *, field: str = "unsafe_metadata") -> bytes:
    """A user.created whose ``field`` holds ``{"x": <placeholder_value>}``, as raw JSON text
    (json.dumps could not write a 5,000-digit integer, nor would Clerk's senders care)."""
    user = {**clerk_user(user_id=user_id, email=f"{user_id}@x.com"), field: {"x": "PLACE"}}
    return json.dumps(event("user.created", user)).encode().replace(b'"PLACE"', placeholder_value)


@pytest.fixture
def server_log() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLines())
    logger = logging.getLogger("clerksync")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)


def test_a_5000_digit_integer_in_unsafe_metadata_stores_the_user(
    receiver: RunningReceiver, store: Store, cli: Any
) -> None:
    """Finding 1: was 400 "body is not JSON" (Python's integer-digit limit), for good."""
    digits = b"7" * 5000
    body = body_with("user_digits", digits)
    response = post(receiver.url, WEBHOOK_SECRET, None, raw=body, msg_id="msg_digits")
    assert response.status_code == 200, response.text
    assert response.json() == {"outcome": "applied"}
    assert find_user(store, "user_digits")["email"] == "user_digits@x.com"
    receiver.receiver.log.flush_now()
    shown = cli("events", "show", "msg_digits", "--payload", "--json")
    assert shown.exit_code == 0, shown.stderr
    # the number comes back as the digits it was: valid JSON, not a string
    assert strict_json(shown.stdout)["payload"]["data"]["unsafe_metadata"]["x"] == "7" * 5000
    replayed = cli("events", "replay", "msg_digits", "--json")
    assert replayed.exit_code == 0, replayed.stderr
    assert json.loads(replayed.stdout)[0]["outcome"] == "duplicate"


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_non_finite_numbers_are_taken_and_json_output_stays_json(
    receiver: RunningReceiver, store: Store, cli: Any, number: bytes
) -> None:
    """Finding 5: ``events show --payload --json`` printed bare NaN, which is not JSON."""
    body = body_with("user_nan", number, field="private_metadata")
    response = post(receiver.url, WEBHOOK_SECRET, None, raw=body, msg_id="msg_nan")
    assert response.status_code == 200, response.text
    receiver.receiver.log.flush_now()
    shown = cli("events", "show", "msg_nan", "--payload", "--json")
    assert shown.exit_code == 0, shown.stderr
    value = strict_json(shown.stdout)["payload"]["data"]["private_metadata"]["x"]
    # JSON holds 1e400 as written; NaN and the infinities (which it cannot) as strings
    assert value == ("1e400" if number == b"1e400" else number.decode())
    assert "NaN" not in cli("events", "show", "msg_nan", "--payload").stdout.replace('"NaN"', "")


def test_a_first_name_over_the_limit_is_cut_stored_and_logged(
    receiver: RunningReceiver, store: Store, cli: Any, server_log: io.StringIO
) -> None:
    """Finding 6: was a permanent 400 "must be a string or null", the limit undocumented."""
    user = clerk_user(user_id="user_long", first_name="A" * 5000, last_name="B" * 10)
    user["image_url"] = "https://img.clerk.com/" + "i" * MAX_TEXT
    response = post(receiver.url, WEBHOOK_SECRET, event("user.created", user), msg_id="msg_long")
    assert response.status_code == 200, response.text
    doc = find_user(store, "user_long")
    assert doc["firstName"] == "A" * MAX_TEXT and doc["lastName"] == "B" * 10
    assert doc["profilePicture"] is None  # a URL cut short is another URL: left out
    notes = [
        f"first_name cut to {MAX_TEXT} characters",
        f"image_url over {MAX_TEXT} characters, not stored",
    ]
    logged = [json.loads(line) for line in server_log.getvalue().splitlines()]
    assert [e.get("notes") for e in logged if e.get("id") == "msg_long"] == [notes]
    assert all(e["level"] == "warning" for e in logged if e.get("id") == "msg_long")
    receiver.receiver.log.flush_now()
    listed = json.loads(cli("events", "list", "--json").stdout)
    assert [r["notes"] for r in listed if r["id"] == "msg_long"] == [notes]
    shown = cli("events", "show", "msg_long")
    assert f"notes: first_name cut to {MAX_TEXT} characters; image_url" in shown.stdout
    assert "A" * 100 not in shown.stdout  # the record names the field, not the value


def test_an_id_is_never_cut_an_over_long_one_is_still_400(
    receiver: RunningReceiver, store: Store
) -> None:
    user = clerk_user(user_id="user_" + "x" * 200)
    response = post(receiver.url, WEBHOOK_SECRET, event("user.created", user))
    assert response.status_code == 400, response.text
    assert "Clerk user id" in response.json()["error"]
    assert store.count() == 0


def test_an_event_type_that_is_no_type_is_400_not_a_megabyte_in_the_log(
    receiver: RunningReceiver, store: Store
) -> None:
    body = {"type": "x" * 500_000, "data": {"id": "sess_1"}, "object": "event"}
    response = post(receiver.url, WEBHOOK_SECRET, body, msg_id="msg_type")
    assert response.status_code == 400, response.text
    assert "event type" in response.json()["error"]
    receiver.receiver.log.flush_now()
    assert [r["type"] for b in store.deliveries.find({}) for r in b["records"]] == [None]
