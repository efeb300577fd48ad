"""Adoption: a Clerk user takes over the one document the app created for its verified email."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clerksync.devtools.payloads import clerk_user, event
from clerksync.doctor.database import check_app_collection
from clerksync.kinds.user import USER
from clerksync.mapping import bookkeeping as bk
from clerksync.store.database import Store
from clerksync.store.lookups import find_user
from tests.conftest import ALL_SCHEMAS, WEBHOOK_SECRET
from tests.support.fakeclerk import FakeClerk
from tests.support.receiver import RunningReceiver, post
from tests.support.writes import delete, upsert, user_hooks

FAST = ("--rate", "1000")


def app_user(store: Store, email: str, **extra: Any) -> Any:
    """A document the app wrote by hand, as the report's admin did: a placeholder Clerk id,
    an admin flag, a field clerksync does not know."""
    users = store.schema.users
    doc = {
        users.email: email,
        users.clerk_id: "clerk_34",
        users.admin.field: users.admin.stored(True),
        "notes": "created by hand",
        **extra,
    }
    if users.app_id:
        doc[users.app_id] = 34
    return store.users.insert_one(doc).inserted_id


def unverified(data: dict[str, Any]) -> dict[str, Any]:
    data["email_addresses"][0]["verification"]["status"] = "unverified"
    return data


def email_index(store: Store, kind: str) -> None:
    """The app's index on its email field: ``plain``, ``unique`` (the guide's model: the
    receiver inserts first and adopts when it refuses) or ``partial unique`` (it may not
    refuse: the receiver looks up first)."""
    email = store.schema.users.email
    assert email is not None
    options: dict[str, Any] = {"unique": kind != "plain"}
    if kind == "partial unique":
        options["partialFilterExpression"] = {email: {"$type": "string"}}
    store.users.create_index(email, name="app_email", **options)


@ALL_SCHEMAS
@pytest.mark.parametrize("index", ["plain", "unique", "partial unique"])
def test_the_receiver_adopts_the_app_created_document(
    receiver: RunningReceiver, store: Store, index: str
) -> None:
    users = store.schema.users
    email_index(store, index)  # the app's model indexes it
    mongo_id = app_user(store, "grace@example.com")
    response = post(
        receiver.url,
        WEBHOOK_SECRET,
        event("user.created", clerk_user(user_id="user_grace", email="grace@example.com")),
    )
    assert response.status_code == 200 and response.json()["outcome"] == "applied"
    assert store.count() == 1  # no second document
    doc = find_user(store, "user_grace")
    assert doc["_id"] == mongo_id and doc["notes"] == "created by hand"
    assert users.is_admin(doc) is True  # the app's fields kept
    if users.app_id:
        assert doc[users.app_id] == 34
    assert bk.has(doc, bk.DUE)  # Clerk learns the document's id


@pytest.mark.parametrize("index", ["plain", "unique"])
def test_an_email_index_the_app_creates_while_the_receiver_runs_is_used_at_once(
    receiver: RunningReceiver, store: Store, index: str
) -> None:
    """The receiver read the index list (no email index) and found no app document at a
    first signup; the app then makes its index and a document. The next signup adopts it (it
    was refused 503 by a unique index, or got a second document beside a plain one, until
    the index list was read again a minute later or at a restart)."""
    first = clerk_user(user_id="user_first", email="first@example.com")
    assert post(receiver.url, WEBHOOK_SECRET, event("user.created", first)).status_code == 200
    email_index(store, index)  # the app starts and its ORM makes its indexes
    mongo_id = app_user(store, "grace@example.com")
    data = clerk_user(user_id="user_grace", email="grace@example.com")
    response = post(receiver.url, WEBHOOK_SECRET, event("user.created", data))
    assert (response.status_code, response.json()["outcome"]) == (200, "applied")
    assert store.count() == 2  # user_first and the adopted document: no second Grace
    assert find_user(store, "user_grace")["_id"] == mongo_id


def test_adoption_when_the_server_names_the_username_index_first(
    receiver: RunningReceiver, store: Store
) -> None:
    """The guide's model: email and username unique. The app's document and the new user
    share both, and this server names indexes in name order: the username one is reported;
    the document is adopted all the same."""
    store.users.create_index("username", unique=True, name="app_username")
    store.users.create_index("email", unique=True, name="app_zemail")
    mongo_id = app_user(store, "grace@example.com", username="grace")
    data = clerk_user(user_id="user_grace", email="grace@example.com", username="grace")
    response = post(receiver.url, WEBHOOK_SECRET, event("user.created", data))
    assert (response.status_code, response.json()["outcome"]) == (200, "applied")
    assert store.count() == 1 and find_user(store, "user_grace")["_id"] == mongo_id


def test_a_user_deleted_while_its_document_is_adopted_is_not_brought_back(
    store: Store,
) -> None:
    """``user.deleted`` ran between the adoption's tombstone check and its take-over: its
    delete found no document under the Clerk id. The take-over sees the tombstone after
    and undoes itself (the app's document goes, as the delete would have taken it)."""
    from clerksync.kinds.user import parse_clerk_user
    from clerksync.store.mongo import utcnow

    email_index(store, "unique")
    app_user(store, "gone@example.com")
    user = parse_clerk_user(clerk_user(user_id="user_gone", email="gone@example.com"))
    [found] = user_hooks(store).adoption_candidates(["gone@example.com"])["gone@example.com"]
    assert delete(store, USER, "user_gone").outcome == "applied"  # tombstone; nothing to delete
    taken = user_hooks(store).take_over(user, found, utcnow())
    assert taken is not None and taken.outcome == "stale"
    assert store.users.count_documents({"clerkId": "user_gone"}) == 0


@pytest.mark.parametrize("index", ["plain", "unique"])
def test_a_signup_reads_for_adoption_only_when_the_email_index_may_not_refuse(
    store: Store, index: str
) -> None:
    """Beside a unique email index a new user costs one read of clerksync's own (the
    tombstone check after the insert); beside a plain one, a second (the adoption lookup
    before it). And one of the subscription items stored for it (a plan that arrived before
    its user), by the payer's index."""
    from pymongo import MongoClient, monitoring

    from clerksync.kinds.user import parse_clerk_user

    class Commands(monitoring.CommandListener):
        """The commands this client sends (whatever else the server is serving)."""

        def __init__(self) -> None:
            self.names: list[str] = []
            self.found: list[str] = []  # the collections each find read

        def started(self, event: monitoring.CommandStartedEvent) -> None:
            self.names.append(event.command_name)
            if event.command_name == "find":
                self.found.append(event.command["find"])

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    email_index(store, index)
    app_user(store, "someone@example.com")
    sent = Commands()
    from clerksync.settings import load_settings

    url = load_settings().mongodb_url  # the fixture's database, on a client of its own
    client: MongoClient[Any] = MongoClient(url, tz_aware=True, event_listeners=[sent])
    watched = Store(client, store.name, store.schema)
    try:
        assert user_hooks(
            watched
        ).email_indexed()  # the index list is read once a minute, not per signup
        sent.names.clear()
        user = parse_clerk_user(clerk_user(user_id="user_new", email="new@example.com"))
        assert upsert(watched, USER, user, likely_new=True).outcome == "applied"
        # No subscription item waits for this user: its plan costs no read of its own.
        assert "subscriptionItems" not in sent.found
        assert len(sent.found) == (1 if index == "unique" else 2)
        assert sent.names.count("insert") == 1
    finally:
        client.close()
    assert store.count() == 2


def test_an_unverified_email_an_app_document_holds_is_refused_not_adopted(
    receiver: RunningReceiver, store: Store
) -> None:
    email_index(store, "unique")
    mongo_id = app_user(store, "eve@example.com")
    data = unverified(clerk_user(user_id="user_eve", email="eve@example.com"))
    response = post(receiver.url, WEBHOOK_SECRET, event("user.created", data))
    assert response.status_code == 503 and "app_email" in response.text
    doc = store.users.find_one({"_id": mongo_id})
    assert doc is not None and doc["clerkId"] == "clerk_34"  # untouched
    assert store.count() == 1


@pytest.mark.parametrize("case", ["unverified", "two candidates"])
def test_no_adoption_without_a_verified_email_or_with_several_candidates(
    receiver: RunningReceiver, store: Store, case: str
) -> None:
    store.users.create_index("email", name="app_email")
    first = app_user(store, "ada@example.com")
    data = clerk_user(user_id="user_ada", email="ada@example.com")
    if case == "unverified":
        data = unverified(data)
    else:
        second = app_user(store, "Ada@example.com".lower(), notes="a second one")
    assert post(receiver.url, WEBHOOK_SECRET, event("user.created", data)).status_code == 200
    assert find_user(store, "user_ada")["_id"] != first  # a document of its own
    assert store.users.count_documents({"clerkId": "clerk_34"}) == (
        1 if case == "unverified" else 2
    )
    if case == "two candidates":
        [conflict] = [c for c in check_app_collection(store) if c.name == "adoption"]
        assert str(first) in conflict.detail and str(second) in conflict.detail


@ALL_SCHEMAS
def test_reconcile_adopts_and_dry_run_counts_it(
    cli: Any, store: Store, fake_clerk: FakeClerk
) -> None:
    users = store.schema.users
    mongo_id = app_user(store, "lin@example.com")  # no email index: reconcile adopts anyway
    app_user(store, "kim@example.com")
    fake_clerk.add_user(user_id="user_lin", email="lin@example.com")
    fake_clerk.add_raw(unverified(clerk_user(user_id="user_kim", email="kim@example.com")))
    fake_clerk.add_user(user_id="user_new", email="new@example.com")
    planned = json.loads(cli("reconcile", "--dry-run", "--json", *FAST).stdout)
    assert (planned["adopted"], planned["created"]) == (1, 2)
    assert store.users.count_documents({users.clerk_id: "user_lin"}) == 0
    done = json.loads(cli("reconcile", "--json", *FAST).stdout)
    assert (done["adopted"], done["created"]) == (1, 2)
    assert find_user(store, "user_lin")["_id"] == mongo_id
    assert store.count() == 4  # lin adopted; kim (unverified) and new created; kim's app doc
    again = json.loads(cli("reconcile", "--json", *FAST).stdout)
    assert (again["adopted"], again["created"], again["unchanged"]) == (0, 0, 3)


@pytest.mark.parametrize("schema", ["fastapi"], indirect=True)
def test_promoting_an_app_user_not_in_clerk_changes_mongo_only(
    cli: Any, store: Store, fake_clerk: FakeClerk
) -> None:
    mongo_id = store.users.insert_one({"email": "ops@app.com", "role": None}).inserted_id
    result = cli("promote", str(mongo_id), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["clerk"] == "not linked"
    doc = store.users.find_one({"_id": mongo_id})
    assert doc is not None and doc["role"] == "admin" and not bk.has(doc, bk.DUE)
    assert fake_clerk.metadata_writes == []
