"""Adoption whatever the app's indexes: the report's schema has no index on ``email``, and
its hand-made user must not become two documents when it signs up through Clerk. The
receiver, ``ensure_user`` and ``reconcile`` all adopt; a signup where the app has no
document of its own to adopt stays one write."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pytest

from clerksync.devtools.payloads import clerk_user, event
from clerksync.kinds.user import USER, parse_clerk_user
from clerksync.store.adoption import APP_DOCUMENTS_TTL, MAX_SHARE, AppDocuments, kept_for
from clerksync.store.database import Store
from tests.conftest import ALL_SCHEMAS, WEBHOOK_SECRET
from tests.store.test_adoption import app_user, unverified
from tests.support.commands import Commands
from tests.support.fakeclerk import FakeClerk
from tests.support.receiver import post
from tests.support.writes import upsert

if TYPE_CHECKING:
    from clerksync.app.ensure import Ensurer

FASTAPI = pytest.mark.parametrize("schema", ["fastapi"], indirect=True)


def adopt_by(
    how: str, store: Store, fake: FakeClerk, data: dict[str, Any], **fixtures: Any
) -> None:
    """A Clerk user with ``data`` reaches the database the way ``how`` says."""
    fake.add_raw(data)
    if how == "receiver":
        answer = post(fixtures["receiver"].url, WEBHOOK_SECRET, event("user.created", data))
        assert answer.status_code == 200, answer.text
    elif how == "ensure_user":
        fixtures["ensurer"].ensure(data["id"])
    else:
        result = fixtures["cli"]("reconcile", "--json", "--rate", "1000")
        assert result.exit_code == 0, result.stderr


@FASTAPI
@pytest.mark.parametrize("how", ["receiver", "ensure_user", "reconcile"])
def test_a_verified_email_adopts_the_app_document_without_an_email_index(
    store: Store, fake_clerk: FakeClerk, receiver: Any, ensurer: Ensurer, cli: Any, how: str
) -> None:
    assert not [i for i in store.app_indexes() if "email" in dict(i["key"])]
    mongo_id = app_user(store, "grace@example.com")  # user_id 34, role "admin"
    data = clerk_user(user_id="user_grace", email="grace@example.com")
    adopt_by(how, store, fake_clerk, data, receiver=receiver, ensurer=ensurer, cli=cli)
    assert store.count() == 1
    [doc] = store.users.find()
    assert doc["_id"] == mongo_id and doc["clerk_user_id"] == "user_grace"
    assert (doc["user_id"], doc["role"], doc["notes"]) == (34, "admin", "created by hand")


@FASTAPI
@pytest.mark.parametrize("how", ["receiver", "ensure_user", "reconcile"])
def test_an_unverified_email_is_not_adopted(
    store: Store, fake_clerk: FakeClerk, receiver: Any, ensurer: Ensurer, cli: Any, how: str
) -> None:
    mongo_id = app_user(store, "eve@example.com")
    data = unverified(clerk_user(user_id="user_eve", email="eve@example.com"))
    adopt_by(how, store, fake_clerk, data, receiver=receiver, ensurer=ensurer, cli=cli)
    assert store.count() == 2
    assert store.users.find_one({"_id": mongo_id})["clerk_user_id"] == "clerk_34"


@ALL_SCHEMAS
def test_the_receiver_adopts_on_every_schema_without_an_email_index(
    store: Store, receiver: Any
) -> None:
    mongo_id = app_user(store, "lin@example.com")
    data = clerk_user(user_id="user_lin", email="lin@example.com")
    assert post(receiver.url, WEBHOOK_SECRET, event("user.created", data)).status_code == 200
    assert store.count() == 1
    assert store.users.find_one({store.clerk_id: "user_lin"})["_id"] == mongo_id


@pytest.mark.parametrize("app_documents", [False, True])
def test_a_signup_looks_for_a_document_to_adopt_only_when_the_app_has_some(
    watched: tuple[Store, Commands], app_documents: bool
) -> None:
    """No email index. With nothing of the app's to adopt, a signup is its insert and the
    tombstone check (the existence check is asked once, then kept); with app documents,
    the lookup by email runs before the insert."""
    store, commands = watched
    if app_documents:
        app_user(store, "someone@example.com")
    first = parse_clerk_user(clerk_user(user_id="user_first", email="first@example.com"))
    upsert(store, USER, first, likely_new=True)  # asks whether the app has documents
    commands.sent.clear()
    user = parse_clerk_user(clerk_user(user_id="user_new", email="new@example.com"))
    assert upsert(store, USER, user, likely_new=True).outcome == "applied"
    names = commands.names()
    assert names.count("insert") == 1
    assert names.count("find") == (2 if app_documents else 1)  # + the lookup by email


@FASTAPI
def test_a_stale_answer_is_given_at_once_and_asked_again_in_the_background(store: Store) -> None:
    """Only the first signup waits for the scan: a later one (a user's first request through
    ``ensure_user``) gets the kept answer while one thread asks again."""
    docs = AppDocuments(store)
    assert docs.exist() is False  # the first answer is waited for
    app_user(store, "late@example.com")
    assert docs._known is not None
    asked, ttl, found = docs._known
    docs._known = (asked - ttl - 1, ttl, found)  # as if it were kept past its time
    assert docs.exist() is False  # the kept answer, at once: this caller does not scan
    deadline = time.monotonic() + 20
    while not docs.exist():  # the background ask lands
        assert time.monotonic() < deadline, "the answer was not asked again"
        time.sleep(0.02)


@FASTAPI
def test_a_background_ask_that_fails_keeps_the_answer_and_is_asked_again(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    from pymongo import MongoClient

    from clerksync.settings import load_settings

    client: MongoClient[Any] = MongoClient(load_settings().mongodb_url, tz_aware=True)
    docs = AppDocuments(Store(client, store.name, store.schema))
    app_user(store, "kept@example.com")
    assert docs.exist() is True
    client.close()  # the database is gone for this process
    assert docs._known is not None
    asked, ttl, found = docs._known
    docs._known = (asked - ttl - 1, ttl, found)
    assert docs.exist() is True  # the kept answer
    deadline = time.monotonic() + 20
    while "could not check for app documents" not in caplog.text:
        assert time.monotonic() < deadline, "the background ask did not report its failure"
        time.sleep(0.02)
    with docs._lock:  # released once the failed ask is over: the next signup asks again
        assert docs._known[2] is True


def test_a_slow_check_is_kept_longer_so_it_takes_a_bounded_share_of_the_database() -> None:
    assert kept_for(0.01) == APP_DOCUMENTS_TTL
    assert kept_for(4.7) == 4.7 / MAX_SHARE  # a 4.7 s scan (100,000 documents) every 94 s


def test_doctor_recommends_the_email_index_when_app_documents_wait(store: Store, cli: Any) -> None:
    app_user(store, "ops@example.com")
    checks = json.loads(cli("doctor", "--json").stdout)["checks"]
    [adoption] = [c for c in checks if c["name"] == "adoption index"]
    assert adoption["status"] == "warn" and "scans the collection" in adoption["detail"]
    assert any("email: 1" in line for line in adoption["commands"])  # the index to declare
    store.users.create_index("email", name="app_email")
    checks = json.loads(cli("doctor", "--json").stdout)["checks"]
    assert not [c for c in checks if c["name"].startswith("adoption")]
