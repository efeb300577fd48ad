"""The schema seam: presets, mapping files, CLERKSYNC_SCHEMA, and the documents each writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from clerksync.devtools.payloads import clerk_user
from clerksync.errors import ConfigError
from clerksync.kinds.user import USER, parse_clerk_user
from clerksync.mapping.files import load_schema
from clerksync.mapping.schema import FASTAPI, NEXTJS
from clerksync.mapping.users import public_view, wanted_metadata
from clerksync.store.database import Store
from clerksync.store.lookups import find_user
from tests.conftest import ALL_SCHEMAS, SCHEMA_FILE
from tests.support.writes import upsert

GUIDE_FIELDS = {
    "clerkId",
    "email",
    "firstName",
    "lastName",
    "username",
    "profilePicture",
    "isAdmin",
    "createdAt",
    "updatedAt",
}


class User(BaseModel):
    """The debug report's FastAPI/Beanie model."""

    user_id: int
    username: str
    password_hash: str | None
    role: str | None
    name: str
    email: str | None
    phone: str
    address: str
    clerk_user_id: str
    auth_provider: str
    is_active: bool
    status: str


def state(**kw: object) -> object:
    return parse_clerk_user(clerk_user(**kw))


@pytest.mark.parametrize("schema", ["fastapi"], indirect=True)
def test_a_fastapi_document_validates_against_the_reports_user_model(store: Store) -> None:
    upsert(store, USER, state(user_id="user_a", username=None, email="Grace@Example.com"))
    upsert(store, USER, state(user_id="user_b", first_name=None, last_name=None, email=None))
    a, b = (store.users.find_one({"clerk_user_id": i}) for i in ("user_a", "user_b"))
    assert a is not None and b is not None
    user = User.model_validate(a)
    assert (user.username, user.name, user.email) == ("grace", "Ada Lovelace", "grace@example.com")
    assert (user.phone, user.address, user.password_hash, user.role) == ("", "", None, None)
    assert (user.auth_provider, user.is_active, user.status) == ("clerk", True, "active")
    assert User.model_validate(b).name == "user_b" == b["username"]  # no name, no email
    assert set(a) == set(User.model_fields) | {"_id", "clerksync"}  # no nextjs field
    assert {a["user_id"], b["user_id"]} == {1, 2}
    assert wanted_metadata(a, store.schema.users) == {
        "userMongoId": str(a["_id"]),
        "userId": a["user_id"],
        "isAdmin": False,
    }


@pytest.mark.parametrize("schema", ["nextjs"], indirect=True)
def test_a_nextjs_document_reads_back_through_the_guides_fields(store: Store) -> None:
    upsert(store, USER, state(user_id="user_a", username="ada"))
    doc = store.users.find_one({"clerkId": "user_a"})
    assert doc is not None
    assert set(doc) == GUIDE_FIELDS | {"_id", "clerksync"}  # no fastapi field
    assert (doc["firstName"], doc["username"], doc["isAdmin"]) == ("Ada", "ada", False)
    assert wanted_metadata(doc, store.schema.users) == {
        "userMongoId": str(doc["_id"]),
        "isAdmin": False,
    }


@pytest.mark.parametrize("schema", ["custom"], indirect=True)
def test_a_mapping_file_renames_computes_and_keeps_app_fields(store: Store) -> None:
    user = state(user_id="user_c", username=None, email="c@x.com")
    upsert(store, USER, user)
    doc = store.users.find_one({"clerk_uid": "user_c"})
    assert doc is not None and store.users.name == "members"
    assert doc["display_name"] == "Ada Lovelace" and doc["handle"] == "c"
    assert (doc["mobile"], doc["tier"], doc["avatar_override"], doc["is_staff"]) == (
        "none",
        "free",
        None,
        False,
    )
    assert not {"address", "password_hash", "name", "phone", "user_id"} & set(doc)
    store.users.update_one({"_id": doc["_id"]}, {"$set": {"tier": "team", "is_staff": True}})
    upsert(store, USER, state(user_id="user_c", username="cee", updated_at=user.updated_at + 1))
    again = find_user(store, "user_c")
    assert (again["tier"], again["is_staff"], again["handle"]) == ("team", True, "cee")
    assert public_view(again, store.schema.users)["isAdmin"] is True
    assert set(wanted_metadata(again, store.schema.users)) == {"userMongoId", "memberNo", "isAdmin"}


@ALL_SCHEMAS
def test_users_list_json_keeps_its_keys_whatever_the_schema(store: Store) -> None:
    upsert(store, USER, state(user_id="user_v", username="vee"))
    view = public_view(find_user(store, "user_v"), store.schema.users)
    assert list(view) == [
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
    ]
    assert (view["clerkId"], view["email"], view["username"]) == (
        "user_v",
        "ada@example.com",
        "vee",
    )


def test_unknown_schema_value_is_a_config_error_naming_the_variable(cli: object) -> None:
    with pytest.raises(ConfigError, match="CLERKSYNC_SCHEMA"):
        load_schema("django")
    import os

    os.environ["CLERKSYNC_SCHEMA"] = "django"
    try:
        result = cli("users", "list")  # type: ignore[operator]
    finally:
        del os.environ["CLERKSYNC_SCHEMA"]
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "CLERKSYNC_SCHEMA" in result.stderr


def test_presets_and_file(tmp_path: Path) -> None:
    assert load_schema(None) is NEXTJS and load_schema("fastapi") is FASTAPI
    custom = load_schema(str(SCHEMA_FILE))
    assert custom.users.clerk_id == "clerk_uid" and custom.users.app_id == "member_no"
    relative = load_schema(SCHEMA_FILE.name, cwd=SCHEMA_FILE.parent)
    assert relative.users == custom.users


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("preset = 'rails'", "preset must be one of"),
        ("[users.fields]\nnick = 'nickname'", "unknown source 'nickname'"),
        ("[users.fields]\nclerkId = 'email'", "field 'clerkId' is both"),
        ("[users]\ncolour = 'red'", "unknown key 'colour' in \\[users\\]"),
        ("[users]\nclerk_id = 'a.b'", "users.clerk_id must be a top-level field name"),
        ("[users.metadata]\nx = 'name'", "users.metadata.x: must be one of"),
        ("[users]\nadmin = { field = 'role', value = 3 }", "users.admin.value"),
        ("[users", "not valid TOML"),
    ],
)
def test_mapping_file_mistakes_are_one_line_config_errors(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "schema.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_schema(str(path))
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_doctor_compares_the_mapping_with_sampled_documents(store: Store) -> None:
    from clerksync.doctor.database import check_schema_sample

    assert check_schema_sample(store).status == "pass"  # nothing to compare yet
    fastapi = Store(store.client, store.name, FASTAPI)
    upsert(fastapi, USER, state(user_id="user_f"))
    wrong_schema = check_schema_sample(store)  # nextjs reading fastapi documents
    assert wrong_schema.status == "fail" and "CLERKSYNC_SCHEMA=fastapi" in wrong_schema.hint
    store.users.delete_many({})
    upsert(store, USER, state(user_id="user_n"))
    store.users.update_one(
        {"clerkId": "user_n"}, {"$set": {"isAdmin": "yes"}, "$unset": {"lastName": ""}}
    )
    drifted = check_schema_sample(store)
    assert drifted.status == "warn"
    assert "missing lastName (1)" in drifted.detail and "isAdmin (str)" in drifted.detail
