"""Organization and membership payloads -> validated values (pure; Clerk's documented examples)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clerksync.errors import InvalidEvent
from clerksync.kinds.base import MAX_TEXT, noting_cuts
from clerksync.kinds.membership import parse_membership
from clerksync.kinds.organization import parse_deleted_organization, parse_organization
from tests.support.examples import EXAMPLES_FILE
from tests.support.fakeclerk import clerk_membership, clerk_organization

#: Clerk's documented example of every webhook event (clerk/openapi-specs, MIT; "source" inside)
EXAMPLES = EXAMPLES_FILE


def example(event_type: str) -> dict[str, Any]:
    return json.loads(EXAMPLES.read_text())["events"][event_type]["data"]


@pytest.mark.parametrize("event_type", ["organization.created", "organization.updated"])
def test_clerks_organization_examples_parse(event_type: str) -> None:
    data = example(event_type)
    org = parse_organization(data)
    assert (org.id, org.name, org.slug, org.image_url) == (
        data["id"],
        data["name"],
        data["slug"],
        data["image_url"],
    )
    assert (org.created_at, org.updated_at) == (data["created_at"], data["updated_at"])


def test_clerks_organization_deleted_example_carries_only_the_id_and_slug() -> None:
    data = example("organization.deleted")
    deleted = parse_deleted_organization(data)
    assert deleted.id == data["id"]
    with pytest.raises(InvalidEvent):
        parse_organization(data)  # no name, no updated_at: not an organization state


@pytest.mark.parametrize(
    "event_type",
    [
        "organizationMembership.created",
        "organizationMembership.updated",
        "organizationMembership.deleted",
    ],
)
def test_clerks_membership_examples_parse(event_type: str) -> None:
    data = example(event_type)
    member = parse_membership(data)
    assert member.id == data["id"]
    assert member.organization_id == data["organization"]["id"]
    assert member.user_id == data["public_user_data"]["user_id"]
    assert member.role == data["role"]
    assert member.updated_at == data["updated_at"]


def test_the_documented_delete_is_older_than_the_update_before_it() -> None:
    """Why deletes must be final whatever their updated_at."""
    updated = parse_membership(example("organizationMembership.updated"))
    deleted = parse_membership(example("organizationMembership.deleted"))
    assert deleted.updated_at < updated.updated_at


def test_backend_api_objects_parse_like_webhook_data() -> None:
    org = clerk_organization(org_id="org_api1", name="Api", slug="api", updated_at=7)
    member = clerk_membership(org=org, user_id="user_a", role="org:admin", updated_at=9)
    assert parse_organization(org).slug == "api"
    parsed = parse_membership(member)
    assert (parsed.organization_id, parsed.user_id, parsed.role) == (
        "org_api1",
        "user_a",
        "org:admin",
    )


@pytest.mark.parametrize(
    "patch",
    [
        {"id": {"$ne": ""}},
        {"id": "user_2abc"},  # a user id is no organization id
        {"id": "org_a;b"},
        {"name": ""},
        {"name": None},
        {"slug": {"$gt": ""}},
        {"image_url": 3},
        {"updated_at": "yesterday"},
        {"updated_at": True},
        {"updated_at": -1},
        {"updated_at": 2**60},
        {"created_at": 1.5},
    ],
)
def test_malformed_organizations_are_rejected(patch: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent):
        parse_organization({**example("organization.updated"), **patch})


def test_long_names_are_cut_long_urls_left_out_and_both_noted() -> None:
    """Typed by an end user and taken by Clerk: stored, never a 400."""
    patch = {"name": "n" * 5000, "slug": "s" * 3000, "image_url": "https://x/" + "u" * 3000}
    with noting_cuts() as cuts:
        org = parse_organization({**example("organization.updated"), **patch})
    assert (org.name, org.slug, org.image_url) == ("n" * MAX_TEXT, "s" * MAX_TEXT, None)
    assert cuts == [
        f"name cut to {MAX_TEXT} characters",
        f"slug cut to {MAX_TEXT} characters",
        f"image_url over {MAX_TEXT} characters, not stored",
    ]


@pytest.mark.parametrize(
    "patch",
    [
        {"id": {"$ne": ""}},
        {"id": "org_2abc"},
        {"role": ""},
        {"role": ["org:admin"]},
        {"role": "r" * 300},
        {"organization": None},
        {"organization": {"id": {"$regex": "."}}},
        {"public_user_data": None},
        {"public_user_data": {"user_id": {"$ne": None}}},
        {"public_user_data": {"user_id": "user bad"}},
        {"updated_at": None},
    ],
)
def test_malformed_memberships_are_rejected(patch: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent):
        parse_membership({**example("organizationMembership.updated"), **patch})


@pytest.mark.parametrize("data", [None, [], "org_x", {"id": 5}, {"id": "orgmem_1"}])
def test_malformed_organization_deletes_are_rejected(data: Any) -> None:
    with pytest.raises(InvalidEvent):
        parse_deleted_organization(data)
