"""The Clerk user -> document mapping."""

from __future__ import annotations

import pytest

from clerksync.devtools.payloads import clerk_user
from clerksync.errors import InvalidEvent
from clerksync.kinds.user import parse_clerk_user
from clerksync.mapping.schema import NEXTJS
from clerksync.mapping.users import user_fields


def test_primary_email_is_chosen_by_id_not_position() -> None:
    data = clerk_user(emails=["first@example.com", "primary@example.com"])
    data["primary_email_address_id"] = data["email_addresses"][1]["id"]
    assert parse_clerk_user(data).email == "primary@example.com"


def test_user_without_email_maps_to_null_email() -> None:
    data = clerk_user(emails=[], username="phoneonly")
    assert data["primary_email_address_id"] is None
    fields = user_fields(parse_clerk_user(data), NEXTJS.users)
    assert fields["email"] is None
    assert fields["username"] == "phoneonly"


def test_fields_follow_the_mongoose_schema() -> None:
    data = clerk_user(first_name="Ada", last_name="Lovelace", username="ada")
    fields = user_fields(parse_clerk_user(data), NEXTJS.users)
    assert fields["clerkId"] == data["id"]
    assert fields["profilePicture"] == data["image_url"]
    assert (fields["firstName"], fields["lastName"], fields["username"]) == (
        "Ada",
        "Lovelace",
        "ada",
    )
    assert "isAdmin" not in fields and "createdAt" not in fields


@pytest.mark.parametrize(
    "patch",
    [
        {"id": {"$ne": ""}},
        {"id": 5},
        {"updated_at": "yesterday"},
        {"updated_at": True},
        {"first_name": ["x"]},
        {"email_addresses": "a@b"},
        {"public_metadata": []},
    ],
)
def test_wrong_types_are_rejected(patch: dict) -> None:
    with pytest.raises(InvalidEvent):
        parse_clerk_user({**clerk_user(), **patch})
