"""The kinds beyond users and organizations through the receiver: Clerk's documented example of
each event, svix-signed over HTTP, stored under the fields issue 20's table names, in every
schema (nextjs, fastapi, the mapping file); an invitation's url and a payment's details never
kept; both spellings of Clerk's event names; an unknown type ignored and counted."""

from __future__ import annotations

import copy
import json
from typing import Any

from clerksync.kinds.registry import BY_NAME, KINDS
from clerksync.store.database import Store
from tests.conftest import ALL_SCHEMAS, WEBHOOK_SECRET
from tests.support.examples import EXAMPLES_FILE
from tests.support.receiver import RunningReceiver, post

EXAMPLES: dict[str, Any] = json.loads(EXAMPLES_FILE.read_text())["events"]

#: the table of issue 20, per schema: kind -> (collection, the document's fields)
COMMON = {"_id", "clerksync"}
NEXTJS = {
    "subscription item": (
        "subscriptionItems",
        {"clerkId", "subscriptionId", "status", "planId", "planSlug", "planName", "interval"}
        | {"isFreeTrial", "periodStart", "periodEnd", "payerUserId", "payerOrganizationId"}
        | {"createdAt", "updatedAt"},
    ),
    "role": (
        "roles",
        {"clerkId", "key", "name", "description", "permissions", "createdAt", "updatedAt"},
    ),
    "permission": (
        "permissions",
        {"clerkId", "key", "name", "description", "type", "createdAt", "updatedAt"},
    ),
    "organization invitation": (
        "organizationInvitations",
        {"clerkId", "organizationId", "email", "role", "status", "createdAt", "updatedAt"},
    ),
    "organization domain": (
        "organizationDomains",
        {"clerkId", "organizationId", "name", "enrollmentMode", "verified"}
        | {"createdAt", "updatedAt"},
    ),
    "waitlist entry": ("waitlistEntries", {"clerkId", "email", "status", "createdAt", "updatedAt"}),
}
FASTAPI = {
    "subscription item": (
        "subscription_items",
        {"clerk_subscription_item_id", "subscription_id", "status", "plan_id", "plan_slug"}
        | {"plan_name", "interval", "is_free_trial", "period_start", "period_end"}
        | {"payer_user_id", "payer_organization_id"},
    ),
    "role": ("roles", {"clerk_role_id", "key", "name", "description", "permissions"}),
    "permission": ("permissions", {"clerk_permission_id", "key", "name", "description", "type"}),
    "organization invitation": (
        "organization_invitations",
        {"clerk_invitation_id", "clerk_org_id", "email", "role", "status"},
    ),
    "organization domain": (
        "organization_domains",
        {"clerk_domain_id", "clerk_org_id", "name", "enrollment_mode", "verified"},
    ),
    "waitlist entry": ("waitlist_entries", {"clerk_waitlist_entry_id", "email", "status"}),
}
#: tests/support/custom_schema.toml: fastapi, with the items in "billing_items" and the
#: payer's user id renamed; payment attempts kept in "payments"
CUSTOM = {
    **FASTAPI,
    "subscription item": (
        "billing_items",
        (FASTAPI["subscription item"][1] - {"payer_user_id"}) | {"member_clerk_uid"},
    ),
    "payment attempt": (
        "payments",
        {"clerk_payment_attempt_id", "status", "payer_user_id", "payer_organization_id"}
        | {"amount", "currency"},
    ),
}
TABLES = {"nextjs": NEXTJS, "fastapi": FASTAPI, "custom": CUSTOM}


def send(receiver: RunningReceiver, body: dict[str, Any], msg_id: str | None = None) -> str:
    response = post(receiver.url, WEBHOOK_SECRET, body, msg_id=msg_id)
    assert response.status_code == 200, (body.get("type"), response.text)
    return str(response.json()["outcome"])


def table_of(store: Store) -> dict[str, tuple[str, set[str]]]:
    for table in TABLES.values():
        collection = table["subscription item"][0]
        if store.schema.section(BY_NAME["subscription item"]).collection == collection:
            return table
    raise AssertionError("a schema this test does not know")


@ALL_SCHEMAS
def test_every_example_is_acknowledged_and_stored_as_the_table_says(
    receiver: RunningReceiver, store: Store
) -> None:
    upserts = {n: b for n, b in EXAMPLES.items() if not n.endswith(".deleted")}
    deletes = {n: b for n, b in EXAMPLES.items() if n.endswith(".deleted")}
    assert len(EXAMPLES) == 45
    outcomes = {name: send(receiver, body) for name, body in upserts.items()}
    synced = {t for kind in KINDS for t in kind.events}
    for name, outcome in outcomes.items():
        if name not in synced:  # session.*, email.created, sms.created
            assert outcome == "ignored", name
    table = table_of(store)
    for kind_name, (collection, fields) in table.items():
        assert store.collection(BY_NAME[kind_name]).name == collection
        docs = list(store.db[collection].find())
        assert docs, kind_name
        for doc in docs:
            assert set(doc) == fields | COMMON, (kind_name, set(doc) ^ (fields | COMMON))
    if "payment attempt" not in table:  # no mapping asked: logged, never stored
        assert outcomes["paymentAttempt.created"] == "ignored"
        assert not {"paymentAttempts", "payment_attempts"} & set(store.db.list_collection_names())
    payments = list(store.db["payments"].find()) if "payment attempt" in table else []
    for doc in payments:  # the grand total (minor units), and nothing of the card or gateway
        assert doc["amount"] == 2200 and doc["currency"] == "USD"
        kept = json.dumps(doc, default=str)
        assert not any(w in kept for w in ("pi_1A2B", "pm_1A2B", "visa", "4242"))

    for name, body in deletes.items():
        assert send(receiver, body) == "applied", name
        kind = BY_NAME[next(k.name for k in KINDS if name in k.events)]
        gone = body["data"]["id"]
        assert store.collection(kind).count_documents({store.key(kind): gone}) == 0, name
    for name in ("role.updated", "permission.updated", "organizationDomain.updated"):
        late = copy.deepcopy(EXAMPLES[name])
        late["data"]["updated_at"] += 10_000  # newer than anything, after the delete: stale
        assert send(receiver, late) == "stale", name


def test_an_invitations_url_is_never_stored_logged_or_printed(
    cli, receiver: RunningReceiver, store: Store
) -> None:
    body = EXAMPLES["organizationInvitation.created"]
    token = "token=abc123"
    assert token in body["data"]["url"]
    assert send(receiver, body, msg_id="msg_invite") == "applied"
    receiver.receiver.log.flush_now()
    doc = store.db["organizationInvitations"].find_one({"clerkId": body["data"]["id"]})
    assert doc is not None and doc["email"] == "jane.doe@acme.com"
    assert token not in json.dumps(doc, default=str)
    stored = json.dumps(list(store.db["clerksync_deliveries"].find()), default=str)
    assert "msg_invite" in stored and token not in stored
    for args in (("events", "show", "msg_invite", "--payload"), ("events", "list")):
        for shown in (cli(*args), cli(*args, "--json")):
            assert shown.exit_code == 0, shown.stderr
            assert token not in shown.stdout + shown.stderr
    shown = json.loads(cli("events", "show", "msg_invite", "--payload", "--json").stdout)
    assert "email_address" in json.dumps(shown)  # the body is kept, without its url


def test_a_payment_attempt_is_logged_by_type_id_and_outcome_and_its_body_not_kept(
    cli, receiver: RunningReceiver, store: Store
) -> None:
    body = EXAMPLES["paymentAttempt.updated"]
    assert send(receiver, body, msg_id="msg_paid") == "ignored"
    receiver.receiver.log.flush_now()
    rows = json.loads(cli("events", "list", "--json").stdout)
    assert [(r["type"], r["objectId"], r["outcome"]) for r in rows] == [
        ("paymentAttempt.updated", body["data"]["id"], "ignored")
    ]
    stored = json.dumps(list(store.db["clerksync_deliveries"].find()), default=str)
    for kept_nowhere in ("pi_1A2B3C4D5E6F7G8H9I0J1K2L", "pm_1A2B", "4242", "john.doe@acme.com"):
        assert kept_nowhere not in stored


def test_both_spellings_apply_and_an_unknown_type_is_ignored_and_counted(
    cli, receiver: RunningReceiver, store: Store
) -> None:
    base = EXAMPLES["subscriptionItem.pastDue"]
    snake = copy.deepcopy(base)
    snake["type"] = "subscriptionItem.past_due"  # @clerk/backend's spelling
    snake["data"]["updated_at"] += 1
    assert send(receiver, base) == "applied"
    assert send(receiver, snake) == "applied"
    created = copy.deepcopy(base)
    created["type"] = "subscriptionItem.created"  # gone from the spec in 2026, still taken
    created["data"]["updated_at"] += 2
    assert send(receiver, created) == "applied"
    future = copy.deepcopy(base)
    future["type"] = "subscriptionItem.someStateClerkAddsLater"
    assert send(receiver, future, msg_id="msg_future") == "ignored"
    receiver.receiver.log.flush_now()
    stats = json.loads(cli("events", "stats", "--json").stdout)
    assert "subscriptionItem.someStateClerkAddsLater" in json.dumps(stats)
    assert '"ignored"' in json.dumps(stats)


def test_an_invitation_body_the_strict_reader_refuses_is_kept_without_its_url() -> None:
    """A signed body nested past the 512 levels clerksync reads is a 400, yet the log keeps
    it: its type still decides, so an invitation's acceptance url is never kept."""
    from clerksync.mapping.events import logged_body

    deep = b"[" * 600 + b"]" * 600
    body = (
        b'{"type": "organizationInvitation.created", "x": ' + deep + b","
        b' "data": {"id": "orginv_1", "url": "https://accept.example/?token=SECRET"}}'
    )
    kept = logged_body(body)
    assert kept is None or b"SECRET" not in kept
    assert logged_body(b"not json at all") == b"not json at all"  # shown as text
