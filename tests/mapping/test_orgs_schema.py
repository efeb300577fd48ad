"""Organizations and memberships under every schema (nextjs, fastapi, a mapping file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clerksync.errors import ConfigError
from clerksync.mapping.files import load_schema, schema_from_dict
from clerksync.store.database import Store
from tests.conftest import ALL_SCHEMAS, WEBHOOK_SECRET
from tests.support.examples import EXAMPLES_FILE
from tests.support.receiver import RunningReceiver, post

EXAMPLES = json.loads(EXAMPLES_FILE.read_text())["events"]
ORG = EXAMPLES["organization.updated"]["data"]
MEMBER = EXAMPLES["organizationMembership.updated"]["data"]


def test_presets_name_the_fields_design_md_gives() -> None:
    nextjs, fastapi = load_schema("nextjs"), load_schema("fastapi")
    assert (nextjs.organizations.clerk_id, nextjs.organizations.field("image_url")) == (
        "clerkId",
        "imageUrl",
    )
    assert (nextjs.memberships.field("organization_id"), nextjs.memberships.field("user_id")) == (
        "organizationId",
        "userId",
    )
    assert (fastapi.organizations.clerk_id, fastapi.organizations.field("image_url")) == (
        "clerk_org_id",
        "image_url",
    )
    assert (
        fastapi.memberships.clerk_id,
        fastapi.memberships.field("organization_id"),
        fastapi.memberships.field("user_id"),
    ) == ("clerk_membership_id", "clerk_org_id", "clerk_user_id")


@ALL_SCHEMAS
def test_examples_are_stored_with_the_schemas_field_names(
    receiver: RunningReceiver, store: Store
) -> None:
    for name in ("organization.updated", "organizationMembership.updated"):
        assert post(receiver.url, WEBHOOK_SECRET, EXAMPLES[name]).status_code == 200
    o, m = store.schema.organizations, store.schema.memberships
    org = store.db[o.collection].find_one({o.clerk_id: ORG["id"]})
    member = store.db[m.collection].find_one({m.clerk_id: MEMBER["id"]})
    assert org is not None and member is not None
    expected_org = {"_id", "clerksync", o.clerk_id, o.field("name"), o.field("slug")}
    expected_org |= {n for n in (o.field("image_url"), o.created_at, o.updated_at) if n}
    assert set(org) == expected_org
    assert (org[o.field("name")], org[o.field("slug")]) == (ORG["name"], ORG["slug"])
    expected_member = {
        "_id",
        "clerksync",
        m.clerk_id,
        m.field("organization_id"),
        m.field("user_id"),
        m.field("role"),
    }
    expected_member |= {n for n in (m.created_at, m.updated_at) if n}
    assert set(member) == expected_member
    assert (
        member[m.field("organization_id")],
        member[m.field("user_id")],
        member[m.field("role")],
    ) == (
        ORG["id"],
        MEMBER["public_user_data"]["user_id"],
        "org:admin",
    )
    # the cascade follows the mapping too
    assert post(receiver.url, WEBHOOK_SECRET, EXAMPLES["organization.deleted"]).status_code == 200
    assert store.db[m.collection].count_documents({}) == 0


@pytest.mark.parametrize(
    "data",
    [
        {"organizations": {"collection": "teams", "nickname": "x"}},
        {"organizations": {"clerk_id": "$where"}},
        {"organizations": {"name": ""}},
        {"memberships": {"user_id": "role"}},
        {"memberships": "teams"},
    ],
)
def test_a_bad_org_mapping_is_a_clear_error(data: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        schema_from_dict(data, name="test")
    path = tmp_path / "bad.toml"
    path.write_text(
        "\n".join(
            f"[{section}]\n" + "\n".join(f'{k} = "{v}"' for k, v in table.items())
            if isinstance(table, dict)
            else f'{section} = "{table}"'
            for section, table in data.items()
        )
    )
    with pytest.raises(ConfigError, match="CLERKSYNC_SCHEMA"):
        load_schema(str(path))


def test_an_apps_own_plan_field_wins_over_the_plan_kept_from_subscription_items() -> None:
    """A mapping written before clerksync kept plans (``[users.on_insert] plan = "free"``, as
    the docs' own example has) still loads: the app's field is its own and no plan is kept
    under that name. Naming the plan in ``[users]`` on the same field is the error it was."""
    from clerksync.kinds.user import USER

    schema = schema_from_dict(
        {"preset": "fastapi", "users": {"on_insert": {"plan": "free"}}}, name="t"
    )
    assert schema.users.on_insert["plan"] == "free"
    assert "plan" not in schema.derived(USER)  # no plan kept: the field is the app's
    assert schema.derived(USER).get("plan_status") == "plan_status"
    moved = schema_from_dict(
        {"users": {"on_insert": {"plan": "free"}, "plan": "billing_plan"}}, name="t"
    )
    assert moved.derived(USER)["plan"] == "billing_plan"
    with pytest.raises(ValueError, match="both an insert constant"):
        schema_from_dict({"users": {"on_insert": {"plan": "free"}, "plan": "plan"}}, name="t")
