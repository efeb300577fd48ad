"""`clerksync orgs list|show` and the organizations in `users show`, over the real wire server."""

from __future__ import annotations

import json

from clerksync.devtools.payloads import clerk_user
from clerksync.kinds.membership import MEMBERSHIP, parse_membership
from clerksync.kinds.organization import ORGANIZATION, parse_organization
from clerksync.kinds.user import USER, parse_clerk_user
from clerksync.store.database import Store
from clerksync.store.lookups import find_organization
from tests.support.fakeclerk import clerk_membership, clerk_organization
from tests.support.writes import upsert, upsert_outcome


def seed(store: Store) -> None:
    acme = clerk_organization(org_id="org_acme", name="Acme", slug="acme", updated_at=5)
    beta = clerk_organization(org_id="org_beta", name="Beta", slug="beta", updated_at=5)
    for org in (acme, beta):
        upsert_outcome(store, ORGANIZATION, parse_organization(org))
    upsert(store, USER, parse_clerk_user(clerk_user(user_id="user_ada", email="ada@x.com")))
    for mem_id, org, user, role in (
        ("orgmem_1", acme, "user_ada", "org:admin"),
        ("orgmem_2", acme, "user_nomongo", "org:member"),
        ("orgmem_3", beta, "user_ada", "org:member"),
    ):
        member = clerk_membership(org=org, user_id=user, role=role, membership_id=mem_id)
        upsert_outcome(store, MEMBERSHIP, parse_membership(member))


def test_orgs_list_json_has_the_documented_keys(cli, store: Store) -> None:
    seed(store)
    result = cli("orgs", "list", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {r["clerkId"]: r for r in json.loads(result.stdout)}
    assert set(rows["org_acme"]) == {"id", "clerkId", "name", "slug", "members"}
    assert (rows["org_acme"]["members"], rows["org_beta"]["members"]) == (2, 1)
    human = cli("orgs", "list")
    assert human.exit_code == 0 and "Acme" in human.stdout and "2 organizations" in human.stdout


def test_orgs_show_by_slug_or_id_lists_members_with_emails_where_known(cli, store: Store) -> None:
    seed(store)
    for ident in ("acme", "org_acme", str(find_organization(store, "acme")["_id"])):
        result = cli("orgs", "show", ident, "--json")
        assert result.exit_code == 0, result.stderr
        view = json.loads(result.stdout)
        assert view["clerkId"] == "org_acme" and view["members"] == [
            {"userId": "user_ada", "role": "org:admin", "email": "ada@x.com"},
            {"userId": "user_nomongo", "role": "org:member", "email": None},
        ]
    human = cli("orgs", "show", "acme")
    assert human.exit_code == 0 and "org:admin" in human.stdout


def test_orgs_show_unknown_is_exit_1_with_one_line(cli, store: Store) -> None:
    result = cli("orgs", "show", "nope")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "orgs list" in result.stderr


def test_users_show_lists_the_users_organizations_and_roles(cli, store: Store) -> None:
    seed(store)
    view = json.loads(cli("users", "show", "user_ada", "--json").stdout)
    assert view["organizations"] == [
        {"organizationId": "org_acme", "name": "Acme", "slug": "acme", "role": "org:admin"},
        {"organizationId": "org_beta", "name": "Beta", "slug": "beta", "role": "org:member"},
    ]
    human = cli("users", "show", "ada@x.com")
    assert "org_beta" in human.stdout and "org:admin" in human.stdout
