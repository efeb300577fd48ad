"""Only what clerksync stores decides whether a signed delivery can be stored (a 400).

End users set ``unsafe_metadata`` from the frontend: nothing in it (or in
``private_metadata``, or any field clerksync does not map) may turn their signup into a
400 that Svix never retries. Real receiver over loopback, svix-signed, real wire server.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from clerksync.deliverylog.records import iter_records, stored_body
from clerksync.devtools.payloads import clerk_user, event
from clerksync.kinds.membership import MEMBERSHIP
from clerksync.kinds.organization import ORGANIZATION
from clerksync.mapping.events import MAX_DEPTH
from clerksync.store.database import Store
from clerksync.store.lookups import find_user
from tests.conftest import WEBHOOK_SECRET
from tests.support.fakeclerk import clerk_membership, clerk_organization
from tests.support.receiver import RunningReceiver, post


def nested(depth: int) -> Any:
    value: Any = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"deeper": value}
    return value


#: far deeper than any Clerk event: unsafe_metadata's list as deep as the bound allows
#: (the body, data and unsafe_metadata hold it: 3 levels)
DEEP = MAX_DEPTH - 3


def deep_body(user_id: str, depth: int) -> bytes:
    """A signed-to-be user.created whose unsafe_metadata holds a list ``depth`` levels deep."""
    user = {**clerk_user(user_id=user_id), "unsafe_metadata": {"a": "DEEP"}}
    body = json.dumps(event("user.created", user)).encode()
    return body.replace(b'"DEEP"', b"[" * depth + b"]" * depth)


UNSTORED = {
    "unsafe-1e20": {"unsafe_metadata": {"score": 10**20}},
    "unsafe-40-deep": {"unsafe_metadata": {"prefs": nested(40)}},
    "unsafe-200-deep-lists": {"unsafe_metadata": {"a": json.loads("[" * 200 + "]" * 200)}},
    "unsafe-surrogate": {"unsafe_metadata": {"nick": "\ud800"}},
    "private-1e20": {"private_metadata": {"balance": -(10**20)}},
    "public-unmapped-deep": {"public_metadata": {"theme": nested(40), "n": 10**20}},
    "unmapped-field": {"external_accounts": [{"x": 10**30}], "totp": nested(60)},
}


@pytest.mark.parametrize("extra", list(UNSTORED.values()), ids=list(UNSTORED))
def test_what_is_not_stored_never_refuses_a_signup(
    receiver: RunningReceiver, store: Store, extra: dict[str, Any]
) -> None:
    user = {**clerk_user(user_id="user_unsafe", email="u@x.com"), **extra}
    response = post(receiver.url, WEBHOOK_SECRET, event("user.created", user), msg_id="msg_u")
    assert response.status_code == 200, response.text
    assert response.json() == {"outcome": "applied"}
    doc = find_user(store, "user_unsafe")
    assert doc[store.schema.users.email or "email"] == "u@x.com"
    # the body is kept as received (compressed bytes) for replay, unsafe_metadata and all
    receiver.receiver.log.flush_now()
    entry = next(iter_records(store, svix_id="msg_u", payload=True))
    assert entry["outcome"] == "applied"
    assert stored_body(entry) is not None
    assert json.loads(stored_body(entry) or b"")["data"]["id"] == "user_unsafe"


def test_a_metadata_key_is_checked_only_where_the_mapping_keeps_it(
    receiver: RunningReceiver, store: Store
) -> None:
    # nextjs maps userMongoId and isAdmin: memberNo is just another key of Clerk's copy
    user = {**clerk_user(user_id="user_member"), "public_metadata": {"memberNo": 2**70}}
    response = post(receiver.url, WEBHOOK_SECRET, event("user.created", user))
    assert response.status_code == 200, response.text
    assert find_user(store, "user_member")


@pytest.mark.parametrize("schema", ["custom"], indirect=True)
def test_a_kept_metadata_value_past_64_bits_is_no_app_id_and_never_refuses(
    receiver: RunningReceiver, store: Store
) -> None:
    # the custom mapping keeps memberNo (its app id) in clerksync.metadata: 2**70 is no
    # app id (those come from a 64-bit counter), so the copy keeps null and the write-back
    # puts the right one in Clerk; before, the user was a permanent 400
    user = {**clerk_user(user_id="user_member"), "public_metadata": {"memberNo": 2**70}}
    response = post(receiver.url, WEBHOOK_SECRET, event("user.created", user))
    assert response.status_code == 200, response.text
    assert find_user(store, "user_member")["clerksync"]["metadata"]["memberNo"] is None


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,  # the JSON parser cannot take it
        deep_body("user_d", DEEP + 1),  # past the bound every reader can parse again
        json.dumps(
            event("user.created", {**clerk_user(user_id="user_s"), "first_name": "\ud800"})
        ).encode(),  # a stored field that cannot be encoded
    ],
    ids=["too-deep-to-parse", "past-max-depth", "stored-surrogate"],
)
def test_what_cannot_be_parsed_or_stored_is_still_400(
    receiver: RunningReceiver, store: Store, raw: bytes
) -> None:
    response = post(receiver.url, WEBHOOK_SECRET, None, raw=raw)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("payload: ")
    assert store.count() == 0


def test_a_deep_unsafe_metadata_delivery_shows_and_replays(
    receiver: RunningReceiver, store: Store, cli: Any
) -> None:
    body = deep_body("user_deep", DEEP)
    response = post(receiver.url, WEBHOOK_SECRET, None, raw=body, msg_id="msg_deep")
    assert response.status_code == 200, response.text
    receiver.receiver.log.flush_now()
    for args in (("--json",), ()):
        shown = cli("events", "show", "msg_deep", "--payload", *args)
        assert shown.exit_code == 0, shown.stderr
        assert "user_deep" in shown.stdout
    replayed = cli("events", "replay", "msg_deep", "--json")
    assert replayed.exit_code == 0, replayed.stderr
    assert json.loads(replayed.stdout)[0]["outcome"] == "duplicate"


def test_what_an_organization_or_membership_does_not_store_never_refuses_it(
    receiver: RunningReceiver, store: Store
) -> None:
    junk = {"n": 10**20, "deep": nested(40), "nick": "\ud800"}
    org = {**clerk_organization(org_id="org_junk"), "public_metadata": junk}
    org["private_metadata"] = junk
    response = post(receiver.url, WEBHOOK_SECRET, event("organization.created", org))
    assert response.status_code == 200, response.text
    member = clerk_membership(org=org, user_id="user_m", membership_id="orgmem_junk")
    member["public_metadata"] = member["private_metadata"] = junk
    member["public_user_data"]["identifier"] = "\ud800"  # not stored
    response = post(receiver.url, WEBHOOK_SECRET, event("organizationMembership.created", member))
    assert response.status_code == 200, response.text
    assert (
        store.collection(ORGANIZATION).count_documents(
            {store.schema.organizations.clerk_id: "org_junk"}
        )
        == 1
    )
    assert (
        store.collection(MEMBERSHIP).count_documents(
            {store.schema.memberships.clerk_id: "orgmem_junk"}
        )
        == 1
    )


def test_an_organization_field_that_is_stored_and_cannot_be_is_400(
    receiver: RunningReceiver, store: Store
) -> None:
    org = clerk_organization(org_id="org_bad", name="Acme \ud800")
    response = post(receiver.url, WEBHOOK_SECRET, event("organization.created", org))
    assert response.status_code == 400, response.text
    assert "lone surrogate" in response.json()["error"]
