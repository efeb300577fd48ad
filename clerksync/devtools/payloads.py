"""Realistic Clerk user objects and webhook events, as Clerk sends them.

Used by ``clerksync send`` to build test deliveries and by the test suite's
fake Clerk, so both speak the same JSON shapes.
"""

from __future__ import annotations

import secrets
import time
from typing import Any


def new_user_id() -> str:
    return "user_" + secrets.token_hex(13)


def clerk_user(
    *,
    user_id: str | None = None,
    email: str | None = "ada@example.com",
    emails: list[str] | None = None,
    first_name: str | None = "Ada",
    last_name: str | None = "Lovelace",
    username: str | None = None,
    public_metadata: dict[str, Any] | None = None,
    created_at: int | None = None,
    updated_at: int | None = None,
) -> dict[str, Any]:
    """A Backend API user object. ``emails`` adds more addresses; the first is primary."""
    now = int(time.time() * 1000)
    user_id = user_id or new_user_id()
    addresses = emails if emails is not None else ([email] if email else [])
    email_objects = [
        {
            "id": f"idn_{secrets.token_hex(12)}",
            "object": "email_address",
            "email_address": address,
            "reserved": False,
            "verification": {
                "status": "verified",
                "strategy": "email_code",
                "attempts": 1,
                "expire_at": now + 600_000,
            },
            "linked_to": [],
            "created_at": now,
            "updated_at": now,
        }
        for address in addresses
    ]
    return {
        "id": user_id,
        "object": "user",
        "external_id": None,
        "primary_email_address_id": email_objects[0]["id"] if email_objects else None,
        "primary_phone_number_id": None,
        "primary_web3_wallet_id": None,
        "username": username,
        "first_name": first_name,
        "last_name": last_name,
        "image_url": f"https://img.clerk.com/{user_id}",
        "has_image": False,
        "public_metadata": dict(public_metadata or {}),
        "private_metadata": {},
        "unsafe_metadata": {},
        "email_addresses": email_objects,
        "phone_numbers": [],
        "web3_wallets": [],
        "passkeys": [],
        "password_enabled": True,
        "two_factor_enabled": False,
        "totp_enabled": False,
        "backup_code_enabled": False,
        "mfa_enabled_at": None,
        "mfa_disabled_at": None,
        "external_accounts": [],
        "saml_accounts": [],
        "enterprise_accounts": [],
        "last_sign_in_at": None,
        "banned": False,
        "locked": False,
        "lockout_expires_in_seconds": None,
        "verification_attempts_remaining": 100,
        "updated_at": updated_at or now,
        "created_at": created_at or now,
        "delete_self_enabled": True,
        "create_organization_enabled": True,
        "last_active_at": None,
        "legal_accepted_at": None,
    }


def event(
    event_type: str, data: dict[str, Any], *, instance_id: str | None = None
) -> dict[str, Any]:
    """A webhook body: ``{"data", "object": "event", "type", "timestamp", ...}``.

    No ``instance_id`` unless given: the receiver binds an unbound database to the
    instance of the first delivery that names one, and a made-up id would tie it to an
    instance that does not exist (``clerksync.instance``)."""
    body: dict[str, Any] = {
        "data": data,
        "event_attributes": {"http_request": {"client_ip": "127.0.0.1", "user_agent": "clerksync"}},
        "object": "event",
        "timestamp": int(time.time() * 1000),
        "type": event_type,
    }
    if instance_id is not None:
        body["instance_id"] = instance_id
    return body


def deleted_user(user_id: str) -> dict[str, Any]:
    """``user.deleted`` carries only these three fields."""
    return {"deleted": True, "id": user_id, "object": "user"}
