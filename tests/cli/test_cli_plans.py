"""The plan from Clerk Billing on the command line: `users list --plan`, `users show` and
`orgs show` print it, under every schema."""

from __future__ import annotations

import json

from clerksync.devtools.payloads import clerk_user, event
from clerksync.store.database import Store
from tests.conftest import ALL_SCHEMAS
from tests.store.test_plans import deliver
from tests.support.fakeclerk import clerk_organization
from tests.support.fakelists import clerk_subscription_item


def paid(store: Store) -> None:
    for user_id in ("user_pro", "user_free", "user_none"):
        deliver(store, event("user.created", clerk_user(user_id=user_id, updated_at=5)))
    deliver(store, event("organization.created", clerk_organization(org_id="org_paid")))
    for payer, plan in (({"user_id": "user_pro"}, "pro"), ({"user_id": "user_free"}, "free")):
        item = clerk_subscription_item(plan=plan, webhook=True, **payer)
        assert deliver(store, event("subscriptionItem.active", item)) == "applied"
    item = clerk_subscription_item(plan="team", org_id="org_paid", status="past_due", webhook=True)
    assert deliver(store, event("subscriptionItem.pastDue", item)) == "applied"


@ALL_SCHEMAS
def test_users_list_filters_by_plan_and_show_prints_it(cli, store: Store) -> None:
    paid(store)
    listed = cli("users", "list", "--plan", "pro", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert [u["clerkId"] for u in json.loads(listed.stdout)] == ["user_pro"]
    assert json.loads(cli("users", "list", "--plan", "gold", "--json").stdout) == []
    shown = json.loads(cli("users", "show", "user_pro", "--json").stdout)
    assert shown["plan"] == "pro"
    assert "pro" in cli("users", "show", "user_pro").stdout
    none = json.loads(cli("users", "show", "user_none", "--json").stdout)
    assert none["plan"] is None


def test_orgs_show_prints_the_organizations_plan(cli, store: Store) -> None:
    paid(store)
    shown = json.loads(cli("orgs", "show", "org_paid", "--json").stdout)
    assert (shown["plan"], shown["planStatus"]) == ("team", "past_due")
    human = cli("orgs", "show", "org_paid").stdout
    assert "team" in human and "past_due" in human
