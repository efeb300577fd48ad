"""A user already stored is a duplicate whichever unique index the server names first.

A second copy of a stored user collides with clerksync's Clerk-id index *and* with the app's
unique email/username indexes; the server reports one of them (mongod: the first it checks).
When it names the app's, that is still a duplicate or a stale state, never ``IndexRefused``
(a 503 that Svix would retry for days). This server reports indexes in name order, so the
app's indexes here are named to come first.
"""

from __future__ import annotations

import json

import pytest

from clerksync.devtools.payloads import clerk_user, event
from clerksync.kinds.organization import ORGANIZATION
from clerksync.kinds.user import USER, parse_clerk_user
from clerksync.store.database import Store
from clerksync.store.lookups import find_user
from tests.conftest import WEBHOOK_SECRET
from tests.support.fakeclerk import FakeClerk
from tests.support.receiver import RunningReceiver, post
from tests.support.writes import page

FAST = ("--rate", "1000")


def app_indexes_named_first(store: Store) -> None:
    for field in ("email", "username"):
        store.users.create_index(field, unique=True, name=f"aaa_{field}")
    # the server names the app's index, not clerksync's, for a second copy of a user
    doc = {"clerkId": "user_probe", "email": "probe@x.com", "username": "probe"}
    store.users.insert_one(dict(doc))
    try:
        store.users.insert_one(dict(doc))
    except Exception as exc:
        assert "aaa_" in str(exc)
    else:
        raise AssertionError("the second copy went in")
    store.users.delete_many({"clerkId": "user_probe"})


def test_redelivered_and_older_states_are_duplicate_and_stale_not_refused(
    receiver: RunningReceiver, store: Store
) -> None:
    app_indexes_named_first(store)
    data = clerk_user(user_id="user_twice", email="twice@x.com", username="twice", updated_at=2000)
    created = event("user.created", data)
    answers = [post(receiver.url, WEBHOOK_SECRET, created) for _ in range(2)]
    assert [(a.status_code, a.json()["outcome"]) for a in answers] == [
        (200, "applied"),
        (200, "duplicate"),
    ]
    older = event("user.updated", {**data, "updated_at": 1000, "first_name": "Old"})
    answer = post(receiver.url, WEBHOOK_SECRET, older)
    assert (answer.status_code, answer.json()["outcome"]) == (200, "stale")
    assert find_user(store, "user_twice")["firstName"] != "Old"
    assert store.count() == 1


def test_a_stored_user_refused_by_another_field_of_a_new_one_is_still_refused(
    receiver: RunningReceiver, store: Store
) -> None:
    """The other side: a *different* Clerk user with a stored user's email is the app's
    index refusing a write, and says so."""
    app_indexes_named_first(store)
    first = clerk_user(user_id="user_one", email="same@x.com", username="one")
    assert post(receiver.url, WEBHOOK_SECRET, event("user.created", first)).status_code == 200
    second = clerk_user(user_id="user_two", email="same@x.com", username="two")
    answer = post(receiver.url, WEBHOOK_SECRET, event("user.created", second))
    assert answer.status_code == 503 and "aaa_email" in answer.text


def test_a_backfill_page_of_users_already_stored_goes_the_ordered_way(
    cli: object, store: Store, fake_clerk: FakeClerk
) -> None:
    """After an all-new page reconcile inserts the next page outright; users on it that are
    stored already are refused by the app's index first, and are unchanged, not a failure."""
    app_indexes_named_first(store)
    for i in range(1000):
        fake_clerk.add_user(
            user_id=f"user_b{i:04d}", email=f"b{i}@x.com", username=f"b{i}", created_at=1000 + i
        )
    held = [parse_clerk_user(fake_clerk.users[f"user_b{i:04d}"]) for i in range(600, 610)]
    page(store, USER, held)
    result = cli("reconcile", "--json", *FAST)  # type: ignore[operator]
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["created"], summary["unchanged"]) == (990, 10)
    assert store.count() == 1000


def test_a_redelivered_organization_beside_the_apps_unique_slug_index_is_a_duplicate(
    receiver: RunningReceiver, store: Store
) -> None:
    from tests.support.fakeclerk import clerk_organization

    store.ready(ORGANIZATION)
    store.collection(ORGANIZATION).create_index("slug", unique=True, name="aaa_slug")
    org = clerk_organization(org_id="org_twice", name="Twice", updated_at=2000)
    created = event("organization.created", org)
    answers = [post(receiver.url, WEBHOOK_SECRET, created) for _ in range(2)]
    assert [(a.status_code, a.json()["outcome"]) for a in answers] == [
        (200, "applied"),
        (200, "duplicate"),
    ]
    other = clerk_organization(org_id="org_other", name="Other", updated_at=2000)
    other["slug"] = org["slug"]  # a different organization with a taken slug: refused
    answer = post(receiver.url, WEBHOOK_SECRET, event("organization.created", other))
    assert answer.status_code == 503 and "aaa_slug" in answer.text


def test_an_update_the_apps_index_refuses_fails_until_the_conflict_clears(
    receiver: RunningReceiver, store: Store
) -> None:
    """user_b renames "bob" -> "bobby", then user_a takes "bob"; user_a's update arrives
    first. The app's unique username index refuses it: a 503 (Svix retries), never a 2xx
    that drops it; once user_b's rename is in, the retry stores it."""
    store.users.create_index("username", unique=True, name="app_username")
    a = clerk_user(user_id="user_a", email="a@x.com", username="alice", updated_at=1000)
    b = clerk_user(user_id="user_b", email="b@x.com", username="bob", updated_at=1000)
    for data in (a, b):
        assert post(receiver.url, WEBHOOK_SECRET, event("user.created", data)).status_code == 200
    takes_bob = event("user.updated", {**a, "username": "bob", "updated_at": 3000})
    answer = post(receiver.url, WEBHOOK_SECRET, takes_bob)
    assert answer.status_code == 503 and "app_username" in answer.text
    assert find_user(store, "user_a")["username"] == "alice"
    renamed = event("user.updated", {**b, "username": "bobby", "updated_at": 2000})
    assert post(receiver.url, WEBHOOK_SECRET, renamed).status_code == 200
    retried = post(receiver.url, WEBHOOK_SECRET, takes_bob)  # Svix's retry
    assert (retried.status_code, retried.json()["outcome"]) == (200, "applied")
    assert find_user(store, "user_a")["username"] == "bob"


def test_a_backfill_update_the_apps_index_refuses_is_index_refused(store: Store) -> None:
    from clerksync.errors import IndexRefused

    store.users.create_index("username", unique=True, name="app_username")
    a = clerk_user(user_id="user_a", email="a@x.com", username="alice", updated_at=1000)
    b = clerk_user(user_id="user_b", email="b@x.com", username="bob", updated_at=1000)
    page(store, USER, [parse_clerk_user(a), parse_clerk_user(b)])
    newer = parse_clerk_user({**a, "username": "bob", "updated_at": 2000})
    try:
        page(store, USER, [newer])
    except IndexRefused as exc:
        assert exc.index == "app_username"
    else:
        raise AssertionError("a refused update counted as done")
    assert find_user(store, "user_a")["username"] == "alice"


def test_an_organization_update_the_apps_slug_index_refuses_fails(
    receiver: RunningReceiver, store: Store
) -> None:
    from clerksync.errors import IndexRefused
    from clerksync.kinds.organization import parse_organization
    from tests.support.fakeclerk import clerk_organization

    store.ready(ORGANIZATION)
    store.collection(ORGANIZATION).create_index("slug", unique=True, name="app_slug")
    one = clerk_organization(org_id="org_one", slug="one", updated_at=1000)
    two = clerk_organization(org_id="org_two", slug="two", updated_at=1000)
    for org in (one, two):
        assert post(receiver.url, WEBHOOK_SECRET, event("organization.created", org)).status_code
    takes_two = {**one, "slug": "two", "updated_at": 2000}
    answer = post(receiver.url, WEBHOOK_SECRET, event("organization.updated", takes_two))
    assert answer.status_code == 503 and "app_slug" in answer.text
    try:
        page(store, ORGANIZATION, [parse_organization(takes_two)])
    except IndexRefused as exc:
        assert exc.index == "app_slug"
        # the kind it refused, in the one line (not "a Clerk user's document")
        assert "a Clerk organization's document" in str(exc) and " user" not in str(exc)
    else:
        raise AssertionError("a refused update counted as done")
    assert store.collection(ORGANIZATION).find_one({"clerkId": "org_one"})["slug"] == "one"


@pytest.mark.parametrize("schema", ["fastapi"], indirect=True)
def test_an_update_the_apps_index_refuses_names_it_on_a_schema_with_an_app_id(
    receiver: RunningReceiver, store: Store
) -> None:
    """With an app id the stored user is updated first (no id is allocated for it): the
    app's index refusing that update is named as the upsert's refusal is, not a bare 11000."""
    store.users.create_index("username", unique=True, name="app_username")
    a = clerk_user(user_id="user_a", email="a@x.com", username="alice", updated_at=1000)
    b = clerk_user(user_id="user_b", email="b@x.com", username="bob", updated_at=1000)
    for data in (a, b):
        assert post(receiver.url, WEBHOOK_SECRET, event("user.created", data)).status_code == 200
    takes_bob = event("user.updated", {**a, "username": "bob", "updated_at": 3000})
    answer = post(receiver.url, WEBHOOK_SECRET, takes_bob)
    assert answer.status_code == 503 and "app_username" in answer.text
    assert find_user(store, "user_a")["username"] == "alice"
