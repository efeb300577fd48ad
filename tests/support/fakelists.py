"""The fake Clerk's instance-wide lists beyond users, organizations and memberships, in
Clerk's shapes (clerk/openapi-specs ``bapi/2026-05-12.yml``), and the objects they hold.

``GET /billing/subscription_items`` (newest first whatever is asked; free plans' items
only with ``include_free=true``), ``/organization_roles``, ``/organization_permissions``,
``/organization_invitations``, ``/organization_domains``, ``/waitlist_entries``: each
``{data, total_count}``, ``limit`` 1-500 and ``offset`` (422 otherwise), ``order_by``
``±created_at``. The confirmations reconcile asks before calling an id an orphan:
``GET /organization_roles/{id}``, ``/organization_permissions/{id}``,
``/organizations/{org}/invitations/{id}``, ``/organizations/{org}/domains``,
``/waitlist_entries?query=EMAIL``, ``/users/{id}/billing/subscription`` and
``/organizations/{id}/billing/subscription`` (the payer's subscription with its
``subscription_items``; 404 when it has none). Without organizations the organization
lists answer Clerk's 403; without billing the billing ones answer ``billing_off_status``.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

#: list name -> its path
LISTS = {
    "subscription_items": "billing/subscription_items",
    "roles": "organization_roles",
    "permissions": "organization_permissions",
    "invitations": "organization_invitations",
    "domains": "organization_domains",
    "waitlist_entries": "waitlist_entries",
}
BY_ROOT = {path.split("/")[0]: name for name, path in LISTS.items()}
ORG_LISTS = {"roles", "permissions", "invitations", "domains"}
Answer = tuple[int, Any, dict[str, str]]


def _now() -> int:
    return int(time.time() * 1000)


def error(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message, "long_message": message}]}


class ListsState:
    """The objects of each list, and the knobs: ``billing_enabled``, ``billing_off_status``."""

    def _init_lists(self) -> None:
        self.lists: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in LISTS}
        self.billing_enabled = True
        self.billing_off_status = 404

    def add_object(self, name: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Put a Clerk object into a list (``subscription_items``, ``roles``…)."""
        with self.lock:  # type: ignore[attr-defined]
            self.lists[name][obj["id"]] = obj
            self.version += 1  # type: ignore[attr-defined]
        return obj

    def remove_object(self, name: str, object_id: str) -> None:
        with self.lock:  # type: ignore[attr-defined]
            self.lists[name].pop(object_id, None)
            self.version += 1  # type: ignore[attr-defined]

    def lists_route(self, method: str, segments: list[str]) -> str | None:
        """The route name of a request this module answers, or None."""
        if segments[0] in BY_ROOT and (
            segments[0] != "billing" or segments[1:2] == ["subscription_items"]
        ):
            one = len(segments) > (2 if segments[0] == "billing" else 1)
            return f"{method} /{LISTS[BY_ROOT[segments[0]]]}" + ("/{id}" if one else "")
        if segments[0] in ("users", "organizations") and segments[2:] == [
            "billing",
            "subscription",
        ]:
            return f"{method} /{segments[0]}/{{id}}/billing/subscription"
        if segments[0] == "organizations" and segments[2:3] in (["invitations"], ["domains"]):
            return f"{method} /organizations/{{id}}/{segments[2]}" + (
                "/{id}" if len(segments) > 3 else ""
            )
        return None

    def answer_lists(self, route: str, segments: list[str], query: dict[str, list[str]]) -> Answer:
        """Called with the lock held, once the request is admitted (auth, rate limit)."""
        method, path = route.split(" ", 1)
        if method != "GET":
            return 405, error("method_not_allowed", "method not allowed"), {}
        billing = "billing" in path
        if billing and not self.billing_enabled:
            return (
                self.billing_off_status,
                error("feature_not_enabled", "Billing is not enabled"),
                {},
            )
        if not billing and not self.orgs_enabled and not path.startswith("/waitlist"):  # type: ignore[attr-defined]
            from tests.support.fakeclerk import ORGS_DISABLED

            return 403, ORGS_DISABLED, {}
        if path.endswith("/billing/subscription"):
            field = "user_id" if segments[0] == "users" else "organization_id"
            items = [
                i
                for i in self.lists["subscription_items"].values()
                if (i.get("payer") or {}).get(field) == segments[1]
            ]
            if not items:
                return 404, error("resource_not_found", "no subscription"), {}
            return 200, commerce_subscription(items), {}
        if path.startswith("/organizations/{id}/invitations/"):
            found = self.lists["invitations"].get(segments[3])
            if found is None or found["organization_id"] != segments[1]:
                return 404, error("resource_not_found", "Invitation not found"), {}
            return 200, found, {}
        if path.endswith("/{id}"):
            found = self.lists[BY_ROOT[segments[0]]].get(segments[-1])
            if found is None:
                return 404, error("resource_not_found", "not found"), {}
            return 200, found, {}
        if path == "/organizations/{id}/domains":
            items = [
                d for d in self.lists["domains"].values() if d["organization_id"] == segments[1]
            ]
            return self._page(items, {"limit": query.get("limit", ["10"])})
        name = BY_ROOT[segments[0]]
        items = list(self.lists[name].values())
        if name == "subscription_items" and query.get("include_free", ["false"])[0] != "true":
            items = [i for i in items if (i.get("plan") or {}).get("fee", {}).get("amount")]
        searched = name == "waitlist_entries" and query.get("query")
        if searched:  # Clerk's filter by email address, any case
            wanted = query["query"][0].lower()
            items = [e for e in items if wanted in e["email_address"].lower()]
        order = "-created_at" if billing else query.get("order_by", ["-created_at"])[0]
        if order.lstrip("+-") != "created_at":
            return 422, error("form_param_value_invalid", "the fake orders by created_at"), {}
        items.sort(key=lambda o: o["created_at"], reverse=order.startswith("-"))
        # what offset paging skipped is left out of the walk, not of a search for it
        skipped = () if searched else self.skipped_by_paging  # type: ignore[attr-defined]
        return self._page([i for i in items if i["id"] not in skipped], query)

    def _page(self, items: list[dict[str, Any]], query: dict[str, list[str]]) -> Answer:
        try:
            limit = int(query.get("limit", ["10"])[0])
            offset = int(query.get("offset", ["0"])[0])
        except ValueError:
            return 422, error("form_param_format_invalid", "limit/offset must be integers"), {}
        if not 1 <= limit <= 500 or offset < 0:
            return 422, error("form_param_value_invalid", "limit must be 1-500, offset >= 0"), {}
        return 200, {"data": items[offset : offset + limit], "total_count": len(items)}, {}


# -- Clerk's objects, as the Backend API lists them ---------------------------------------------


def payer(user_id: str | None = None, org_id: str | None = None) -> dict[str, Any]:
    return {
        "object": "commerce_payer",
        "id": "cpayer_" + secrets.token_hex(8),
        "instance_id": "ins_2fakeclerk0000000000000",
        "user_id": user_id,
        "organization_id": org_id,
        "first_name": None,
        "last_name": None,
        "email": None,
        "organization_name": None,
        "image_url": "https://img.clerk.com/payer",
        "created_at": 1,
        "updated_at": 1,
    }


def clerk_subscription_item(
    *,
    item_id: str | None = None,
    user_id: str | None = None,
    org_id: str | None = None,
    status: str = "active",
    plan: str = "pro",
    amount: int = 2000,
    created_at: int | None = None,
    updated_at: int | None = None,
    webhook: bool = False,
    subscription_id: str | None = None,
) -> dict[str, Any]:
    """A subscription item as the Backend API lists it (``CommerceSubscriptionItem``: no
    ``subscription_id``, ``plan_period``), or as ``subscriptionItem.*`` sends it
    (``webhook``: ``interval``, ``subscription_id``, the plan's short form)."""
    now = _now()
    plan_id = f"cplan_{plan.replace('-', '_')}"
    item: dict[str, Any] = {
        "object": "subscription_item" if webhook else "commerce_subscription_item",
        "id": item_id or "csub_item_" + secrets.token_hex(10),
        "status": status,
        "plan_id": plan_id,
        "is_free_trial": False,
        "period_start": 1_716_883_200_000,
        "period_end": 1_719_561_600_000,
        "payer": payer(user_id, org_id),
        "created_at": created_at or now,
        "updated_at": updated_at or created_at or now,
    }
    if webhook:
        item["interval"] = "month"
        item["subscription_id"] = subscription_id or "csub_" + secrets.token_hex(10)
        item["plan"] = {"id": plan_id, "slug": plan, "name": plan.title(), "amount": amount}
    else:
        item.update(
            instance_id="ins_2fakeclerk0000000000000",
            plan_period="month",
            payer_id=item["payer"]["id"],
            canceled_at=None,
            past_due_at=None,
            ended_at=None,
            plan={
                "object": "commerce_plan",
                "id": plan_id,
                "name": plan.title(),
                "slug": plan,
                "fee": {
                    "amount": amount,
                    "amount_formatted": f"{amount / 100:.2f}",
                    "currency": "USD",
                },
                "is_default": amount == 0,
                "is_recurring": True,
            },
        )
    return item


def commerce_subscription(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A payer's subscription with its items (``GET /users/{id}/billing/subscription``)."""
    return {
        "object": "commerce_subscription",
        "id": "csub_" + secrets.token_hex(10),
        "instance_id": "ins_2fakeclerk0000000000000",
        "status": "active",
        "payer_id": items[0]["payer"]["id"],
        "created_at": min(i["created_at"] for i in items),
        "updated_at": max(i["updated_at"] for i in items),
        "active_at": None,
        "past_due_at": None,
        "subscription_items": items,
    }


def clerk_permission(
    *,
    perm_id: str | None = None,
    key: str = "org:posts:create",
    name: str = "Create posts",
    created_at: int | None = None,
    updated_at: int | None = None,
) -> dict[str, Any]:
    now = _now()
    return {
        "object": "permission",
        "id": perm_id or "perm_" + secrets.token_hex(10),
        "name": name,
        "key": key,
        "description": f"{name}.",
        "type": "custom",
        "created_at": created_at or now,
        "updated_at": updated_at or created_at or now,
    }


def clerk_role(
    *,
    role_id: str | None = None,
    key: str = "org:editor",
    name: str = "Editor",
    permissions: list[dict[str, Any]] | None = None,
    created_at: int | None = None,
    updated_at: int | None = None,
) -> dict[str, Any]:
    now = _now()
    return {
        "object": "role",
        "id": role_id or "role_" + secrets.token_hex(10),
        "name": name,
        "key": key,
        "description": None,
        "is_creator_eligible": False,
        "permissions": permissions if permissions is not None else [clerk_permission()],
        "created_at": created_at or now,
        "updated_at": updated_at or created_at or now,
    }


def clerk_invitation(
    *,
    invitation_id: str | None = None,
    org_id: str,
    email: str = "Jane@Example.com",
    role: str = "org:member",
    status: str = "pending",
    created_at: int | None = None,
    updated_at: int | None = None,
) -> dict[str, Any]:
    now = _now()
    token = secrets.token_urlsafe(16)
    return {
        "object": "organization_invitation",
        "id": invitation_id or "orginv_" + secrets.token_hex(10),
        "email_address": email,
        "role": role,
        "role_name": role.removeprefix("org:").title(),
        "organization_id": org_id,
        "inviter_id": None,
        "public_inviter_data": None,
        "status": status,
        "public_metadata": {},
        "private_metadata": {},
        "url": f"https://accounts.example.com/accept-invitation?__clerk_ticket={token}",
        "expires_at": None,
        "created_at": created_at or now,
        "updated_at": updated_at or created_at or now,
    }


def clerk_domain(
    *,
    domain_id: str | None = None,
    org_id: str,
    name: str = "example.com",
    verified: bool = True,
    created_at: int | None = None,
    updated_at: int | None = None,
) -> dict[str, Any]:
    now = _now()
    verification = {
        "status": "verified" if verified else "unverified",
        "strategy": "email_code",
        "attempts": 1,
        "expire_at": None,
        "verified_at": None,
    }
    return {
        "object": "organization_domain",
        "id": domain_id or "orgdmn_" + secrets.token_hex(10),
        "organization_id": org_id,
        "name": name,
        "enrollment_mode": "automatic_invitation",
        "affiliation_email_address": None,
        "affiliation_verification": verification,
        "ownership_verification": None,
        "verification": verification,
        "total_pending_invitations": 0,
        "total_pending_suggestions": 0,
        "created_at": created_at or now,
        "updated_at": updated_at or created_at or now,
    }


def clerk_waitlist_entry(
    *,
    entry_id: str | None = None,
    email: str = "Early@Example.com",
    status: str = "pending",
    created_at: int | None = None,
    updated_at: int | None = None,
) -> dict[str, Any]:
    now = _now()
    return {
        "object": "waitlist_entry",
        "id": entry_id or "wle_" + secrets.token_hex(10),
        "email_address": email,
        "status": status,
        "is_locked": False,
        "invitation": None,
        "created_at": created_at or now,
        "updated_at": updated_at or created_at or now,
    }
