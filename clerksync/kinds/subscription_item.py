"""A Clerk Billing subscription item: ``subscriptionItem.*`` (every status event, in both
spellings Clerk's own code uses), the items ``subscription.*`` carries, and the
instance-wide ``GET /billing/subscription_items``.

Shapes (Clerk's documented examples, and the Backend API's ``CommerceSubscriptionItem``):
an item carries ``id`` (``csub_item_…``), ``status``, ``plan_id`` and ``plan`` (``slug``,
``name``), ``interval`` (``plan_period`` in the list), ``is_free_trial``, ``period_start``
and ``period_end`` (ms), ``payer`` (``user_id``, or ``organization_id`` for an
organization; ``""`` is none), ``subscription_id`` (null in ``subscription.*``, whose
items are that subscription's; absent from the list, so kept as stored), ``created_at``,
``updated_at``. An item belongs to its payer: the payer's delete removes it, and the
payer's document carries the plan of its current item (``Rollup``: ``plan``,
``planStatus``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clerksync.errors import InvalidEvent
from clerksync.kinds.base import (
    Carrier,
    Kind,
    Listing,
    Rollup,
    as_datetime,
    boolean,
    clerk_id,
    deleted_parser,
    json_object,
    millis,
    optional_id,
    text,
    updated_at,
)
from clerksync.kinds.organization import ORG_ID
from clerksync.kinds.user import CLERK_USER_ID

ITEM_ID = re.compile(r"^csub_item_[A-Za-z0-9_]{1,100}$")
SUBSCRIPTION_ID = re.compile(r"^csub_[A-Za-z0-9_]{1,100}$")

#: the order in which an item is the payer's current one: active first, then one still
#: in its period (past due, canceled), then one to come, then one that is over
STATUS_RANK = ("active", "past_due", "canceled", "upcoming", "incomplete", "ended", "expired")


@dataclass(frozen=True)
class ClerkSubscriptionItem:
    """The part of a subscription item clerksync keeps, already validated."""

    id: str
    subscription_id: str | None
    status: str
    plan_id: str | None
    plan_slug: str | None
    plan_name: str | None
    interval: str | None
    is_free_trial: bool
    period_start: int | None
    period_end: int | None
    payer_user_id: str | None
    payer_organization_id: str | None
    created_at: int | None
    updated_at: int


Payer = tuple[str | None, str | None]


def parse_payer(value: Any) -> Payer:
    """(user id, organization id) of a ``payer``: an organization pays for itself, whoever
    clicked; none when there is no payer."""
    if value is None:
        return None, None
    payer = json_object(value, "field 'payer'")
    org = optional_id(
        payer.get("organization_id"), ORG_ID, "payer.organization_id", "organization", "org_"
    )
    if org is not None:
        return None, org
    return optional_id(payer.get("user_id"), CLERK_USER_ID, "payer.user_id", "user", "user_"), None


def parse_item(
    data: Any, *, subscription_id: str | None = None, payer: Payer | None = None
) -> ClerkSubscriptionItem:
    """Validate an item (``subscriptionItem.*`` data, a list item, or one a subscription
    carries: ``subscription_id`` and ``payer`` are then the subscription's, unless the
    item names its own)."""
    data = json_object(data, "the subscription item")
    stamp = updated_at(data)
    status = text(data, "status", required=True)
    assert status is not None
    plan = data.get("plan")
    plan = json_object(plan, "field 'plan'") if plan is not None else {}
    own = data.get("subscription_id")
    user_id, org_id = parse_payer(data["payer"]) if data.get("payer") else payer or (None, None)
    return ClerkSubscriptionItem(
        id=clerk_id(data.get("id"), ITEM_ID, "id", "subscription item", "csub_item_"),
        subscription_id=optional_id(
            own, SUBSCRIPTION_ID, "subscription_id", "subscription", "csub_"
        )
        or subscription_id,
        status=status,
        plan_id=text(data, "plan_id") or text(plan, "id"),
        plan_slug=text(plan, "slug"),
        plan_name=text(plan, "name"),
        interval=text(data, "interval") or text(data, "plan_period"),
        is_free_trial=boolean(data, "is_free_trial"),
        period_start=millis(data, "period_start", required=False),
        period_end=millis(data, "period_end", required=False),
        payer_user_id=user_id,
        payer_organization_id=org_id,
        created_at=millis(data, "created_at", required=False),
        updated_at=stamp,
    )


def parse_subscription(data: Any) -> Carrier:
    """``subscription.*`` data: a subscription (``csub_…``) and the items it carries."""
    data = json_object(data, "the subscription")
    sub_id = clerk_id(data.get("id"), SUBSCRIPTION_ID, "id", "subscription", "csub_")
    payer = parse_payer(data.get("payer"))
    items = data.get("items", data.get("subscription_items"))
    if not isinstance(items, list):
        raise InvalidEvent("field 'items' must be a list of subscription items")
    parsed = tuple(parse_item(i, subscription_id=sub_id, payer=payer) for i in items)
    return Carrier(sub_id, parsed, payer[0])


def current_plan(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The payer's plan: the slug and status of its current item (active, else past due,
    else canceled but in its period, …, else the newest that is over); None without items.
    Ties go to the newest state."""
    if not items:
        return {"plan": None, "plan_status": None}

    def rank(item: Mapping[str, Any]) -> tuple[Any, ...]:
        status = item.get("status")
        place = STATUS_RANK.index(status) if status in STATUS_RANK else len(STATUS_RANK)
        stamp = item.get("updated_at")
        return (place, -(stamp if isinstance(stamp, int) else 0), str(item.get("clerk_id")))

    best = min(items, key=rank)
    return {"plan": best.get("plan_slug"), "plan_status": best.get("status")}


PLAN_NAMES = {
    "nextjs": {"plan": "plan", "plan_status": "planStatus"},
    "fastapi": {"plan": "plan", "plan_status": "plan_status"},
}


def _plan_of(parent: str, via: str) -> Rollup:
    return Rollup(parent, via, ("status", "plan_slug"), PLAN_NAMES, current_plan)


#: every status event, in both spellings Clerk's code uses (the spec's camelCase, and
#: @clerk/backend's snake_case); `created` left the spec in 2026 and is still taken
ITEM_STATES: tuple[str, ...] = ("created", "updated", "active", "canceled", "upcoming")
ITEM_STATES += ("ended", "abandoned", "incomplete", "pastDue", "past_due")
ITEM_STATES += ("freeTrialEnding", "free_trial_ending")

SUBSCRIPTION_ITEM = Kind(
    name="subscription item",
    plural="subscriptionItems",
    id_re=ITEM_ID,
    events={
        **{f"subscriptionItem.{state}": "upsert" for state in ITEM_STATES},
        **{
            f"subscription.{state}": "carried"
            for state in ("created", "updated", "active", "pastDue", "past_due")
        },
    },
    parse=parse_item,
    parse_deleted=deleted_parser(ITEM_ID, "subscription item", "csub_item_"),
    parse_carrier=parse_subscription,
    fields=(
        "subscription_id",
        "status",
        "plan_id",
        "plan_slug",
        "plan_name",
        "interval",
        "is_free_trial",
        "period_start",
        "period_end",
        "payer_user_id",
        "payer_organization_id",
    ),
    optional=(
        "subscription_id",
        "plan_id",
        "plan_name",
        "interval",
        "is_free_trial",
        "period_start",
        "period_end",
    ),
    values=lambda i: {
        "subscription_id": i.subscription_id,
        "status": i.status,
        "plan_id": i.plan_id,
        "plan_slug": i.plan_slug,
        "plan_name": i.plan_name,
        "interval": i.interval,
        "is_free_trial": i.is_free_trial,
        "period_start": as_datetime(i.period_start),
        "period_end": as_datetime(i.period_end),
        "payer_user_id": i.payer_user_id,
        "payer_organization_id": i.payer_organization_id,
    },
    presets={
        "nextjs": {
            "collection": "subscriptionItems",
            "clerk_id": "clerkId",
            "subscription_id": "subscriptionId",
            "status": "status",
            "plan_id": "planId",
            "plan_slug": "planSlug",
            "plan_name": "planName",
            "interval": "interval",
            "is_free_trial": "isFreeTrial",
            "period_start": "periodStart",
            "period_end": "periodEnd",
            "payer_user_id": "payerUserId",
            "payer_organization_id": "payerOrganizationId",
            "created_at": "createdAt",
            "updated_at": "updatedAt",
        },
        "fastapi": {
            "collection": "subscription_items",
            "clerk_id": "clerk_subscription_item_id",
            "subscription_id": "subscription_id",
            "status": "status",
            "plan_id": "plan_id",
            "plan_slug": "plan_slug",
            "plan_name": "plan_name",
            "interval": "interval",
            "is_free_trial": "is_free_trial",
            "period_start": "period_start",
            "period_end": "period_end",
            "payer_user_id": "payer_user_id",
            "payer_organization_id": "payer_organization_id",
            "created_at": None,
            "updated_at": None,
        },
    },
    parents={"user": "payer_user_id", "organization": "payer_organization_id"},
    # A pruned user takes its items along, as its memberships (one user is no mass prune).
    pruned_with=("user",),
    indexed=("payer_user_id", "payer_organization_id"),  # the payer's plan, cascades
    user_of=lambda i: i.payer_user_id,
    sticky=("subscription_id",),
    rollups=(_plan_of("user", "payer_user_id"), _plan_of("organization", "payer_organization_id")),
    listing=Listing(
        "/billing/subscription_items",
        # newest first, whatever is asked; free plans' items only when asked for
        params={"paginated": "true", "include_free": "true"},
        off=((403, None), (404, None)),
        off_note="Clerk Billing is not enabled on this Clerk instance",
        one=(
            "/users/{payer_user_id}/billing/subscription",
            "/organizations/{payer_organization_id}/billing/subscription",
        ),
        one_key="subscription_items",
    ),
)
