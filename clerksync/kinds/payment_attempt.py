"""A Clerk Billing payment attempt: ``paymentAttempt.created|updated``.

It carries amounts, the payer's name and address and the payment method (card brand, last
four digits): the delivery log records its type, id and outcome and keeps no body
(``log_payload``), and nothing is stored unless a mapping file gives it a collection
(``[paymentAttempts] collection = "paymentAttempts"``); then only ``status``, the payer's
ids, the grand total's ``amount`` (minor units) and ``currency``, never card details.
Clerk has no instance-wide list of them: reconcile does not walk them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from clerksync.errors import InvalidEvent
from clerksync.kinds.base import (
    Kind,
    clerk_id,
    deleted_parser,
    json_object,
    millis,
    text,
    updated_at,
)
from clerksync.kinds.subscription_item import parse_payer

ATTEMPT_ID = re.compile(r"^c?pa_[A-Za-z0-9_]{1,100}$")


@dataclass(frozen=True)
class ClerkPaymentAttempt:
    """What a mapping may store of a payment attempt, already validated."""

    id: str
    status: str
    payer_user_id: str | None
    payer_organization_id: str | None
    amount: int | None
    currency: str | None
    created_at: int | None
    updated_at: int


def parse_attempt(data: Any) -> ClerkPaymentAttempt:
    """Validate a payment attempt (``paymentAttempt.*`` data)."""
    data = json_object(data, "the payment attempt")
    stamp = updated_at(data)
    status = text(data, "status", required=True)
    assert status is not None
    totals = data.get("totals")
    total = json_object(totals, "field 'totals'").get("grand_total") if totals else None
    total = json_object(total, "field 'totals.grand_total'") if total is not None else {}
    amount = total.get("amount")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
        raise InvalidEvent("field 'totals.grand_total.amount' must be an integer")
    user_id, org_id = parse_payer(data.get("payer"))
    return ClerkPaymentAttempt(
        id=clerk_id(data.get("id"), ATTEMPT_ID, "id", "payment attempt", "pa_"),
        status=status,
        payer_user_id=user_id,
        payer_organization_id=org_id,
        amount=amount,
        currency=text(total, "currency"),
        created_at=millis(data, "created_at", required=False),
        updated_at=stamp,
    )


PAYMENT_ATTEMPT = Kind(
    name="payment attempt",
    plural="paymentAttempts",
    id_re=ATTEMPT_ID,
    events={"paymentAttempt.created": "upsert", "paymentAttempt.updated": "upsert"},
    parse=parse_attempt,
    parse_deleted=deleted_parser(ATTEMPT_ID, "payment attempt", "pa_"),
    fields=("status", "payer_user_id", "payer_organization_id", "amount", "currency"),
    optional=("payer_organization_id", "amount", "currency"),
    # No collection unless a mapping file names one: the names it then gets.
    presets={
        "nextjs": {
            "collection": None,
            "clerk_id": "clerkId",
            "status": "status",
            "payer_user_id": "payerUserId",
            "payer_organization_id": "payerOrganizationId",
            "amount": "amount",
            "currency": "currency",
            "created_at": "createdAt",
            "updated_at": "updatedAt",
        },
        "fastapi": {
            "collection": None,
            "clerk_id": "clerk_payment_attempt_id",
            "status": "status",
            "payer_user_id": "payer_user_id",
            "payer_organization_id": "payer_organization_id",
            "amount": "amount",
            "currency": "currency",
            "created_at": None,
            "updated_at": None,
        },
    },
    parents={"user": "payer_user_id", "organization": "payer_organization_id"},
    indexed=("payer_user_id",),
    user_of=lambda a: a.payer_user_id,
    log_payload=False,
)
