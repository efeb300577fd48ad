"""`clerksync users list|show` over the real wire server."""

from __future__ import annotations

import json

import pytest

from clerksync.devtools.payloads import clerk_user
from clerksync.kinds.user import USER, parse_clerk_user
from clerksync.store.database import Store
from clerksync.store.lookups import find_user
from clerksync.store.users import set_admin
from tests.conftest import ALL_SCHEMAS
from tests.support.writes import upsert

FIELDS = {
    "id",
    "clerkId",
    "email",
    "firstName",
    "lastName",
    "username",
    "profilePicture",
    "name",
    "appId",
    "role",
    "isAdmin",
    "createdAt",
    "updatedAt",
    "plan",
    "planStatus",
}


def seed(store: Store) -> list[dict]:
    users = [
        clerk_user(user_id="user_ada", email="ada@example.com", first_name="Ada", username="ada"),
        clerk_user(user_id="user_bob", email="bob@example.com", first_name="Bob"),
        clerk_user(user_id="user_cy", emails=[], first_name="Cy", username="cyphone"),
    ]
    for user in users:
        upsert(store, USER, parse_clerk_user(user))
    set_admin(store, find_user(store, "user_bob")["_id"], True)
    return users


@ALL_SCHEMAS
def test_list_json_has_exactly_the_documented_fields(cli, store: Store) -> None:
    seed(store)
    result = cli("users", "list", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 3
    assert all(set(row) == FIELDS for row in rows)
    ada = next(r for r in rows if r["clerkId"] == "user_ada")
    assert ada["email"] == "ada@example.com"
    if store.schema.users.created_at:
        assert ada["createdAt"].endswith("Z")
    else:  # a key the schema lacks is null, never missing
        assert ada["createdAt"] is None
    assert len(ada["id"]) == 24


@ALL_SCHEMAS
def test_filters(cli, store: Store) -> None:
    seed(store)
    admins = json.loads(cli("users", "list", "--admins", "--json").stdout)
    assert [r["clerkId"] for r in admins] == ["user_bob"]
    found = json.loads(cli("users", "list", "--search", "CYPH", "--json").stdout)
    assert [r["clerkId"] for r in found] == ["user_cy"]
    assert len(json.loads(cli("users", "list", "--limit", "2", "--json").stdout)) == 2


def test_table_output_lists_users(cli, store: Store) -> None:
    seed(store)
    result = cli("users", "list")
    assert result.exit_code == 0
    assert "user_ada" in result.stdout and "3 users" in result.stdout


def test_show_by_every_id_form(cli, store: Store) -> None:
    seed(store)
    mongo_id = str(find_user(store, "user_ada")["_id"])
    for ident in ("user_ada", mongo_id, "ADA@example.com"):
        result = cli("users", "show", ident, "--json")
        assert result.exit_code == 0, result.stderr
        view = json.loads(result.stdout)
        assert set(view) == FIELDS | {"organizations"}  # show adds the user's orgs
        assert view["id"] == mongo_id


@pytest.mark.parametrize("schema", ["fastapi"], indirect=True)
def test_show_json_under_the_fastapi_preset_has_its_name_app_id_and_role(cli, store: Store) -> None:
    """The report's Beanie model keeps a full name, an integer ``user_id`` and a ``role``:
    ``users show --json`` left all three out (only the guide's fields had keys)."""
    seed(store)
    bob = json.loads(cli("users", "show", "user_bob", "--json").stdout)
    ada = json.loads(cli("users", "show", "user_ada", "--json").stdout)
    assert bob["name"] == find_user(store, "user_bob")["name"] and bob["name"]
    assert {bob["appId"], ada["appId"]} == {1, 2}  # the counter's integers
    assert (bob["role"], bob["isAdmin"]) == ("admin", True)
    assert (ada["role"], ada["isAdmin"]) == (None, False)


def test_show_says_no_for_a_flag_that_is_off(cli, store: Store) -> None:
    """A table's blank reads "no" in a column of ✓; alone in ``users show`` it read as
    unknown."""
    seed(store)
    lines = cli("users", "show", "user_ada").stdout.splitlines()
    admin = [line.split() for line in lines if line.split()[:1] == ["isAdmin"]]
    assert admin == [["isAdmin", "no"]]


def test_show_unknown_id_exits_1_with_a_clear_message(cli, store: Store) -> None:
    result = cli("users", "show", "user_nobody")
    assert result.exit_code == 1
    assert "no user 'user_nobody'" in result.stderr
    assert result.stdout == ""


def test_bad_configuration_is_one_line_and_exit_2(cli, monkeypatch) -> None:
    monkeypatch.setenv("MONGODB_URL", "http://not-mongo")
    result = cli("users", "list")
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "MONGODB_URL must start with mongodb://" in result.stderr


def test_unreachable_database_exits_1_quickly(cli, monkeypatch) -> None:
    monkeypatch.setenv("MONGODB_URL", "mongodb://127.0.0.1:9/")
    monkeypatch.setenv("CLERKSYNC_MONGO_TIMEOUT_MS", "500")
    result = cli("users", "list")
    assert result.exit_code == 1
    assert "MongoDB did not answer" in result.stderr
    assert "Traceback" not in result.stderr
