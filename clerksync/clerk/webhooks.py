"""Svix signatures: verify a delivery's raw bytes, sign a test one, make a signing secret.

Signatures cover ``{svix-id}.{svix-timestamp}.{raw body}``, so the raw bytes are
verified before anything parses them. svix's ``Webhook.verify`` returns None
in 2.x, and a malformed signature header raises plain ``ValueError``s
(base64, unpacking) besides ``WebhookVerificationError``: all of it is a 400.
"""

from __future__ import annotations

import base64
import functools
import secrets
import time
from collections.abc import Mapping
from typing import Any

MAX_BODY = 1024 * 1024


class SignatureError(Exception):
    """The delivery is not provably from Clerk: missing headers, bad or stale signature."""


@functools.lru_cache(maxsize=4)
def _webhook(secret: str) -> Any:
    """svix's verifier for a secret, made once: it decodes the secret's base64 when made."""
    from svix.webhooks import Webhook

    return Webhook(secret)


def verify(secret: str, body: bytes, headers: Mapping[str, str]) -> None:
    """Raise SignatureError unless ``body`` carries a valid, fresh svix signature."""
    from svix.webhooks import WebhookVerificationError

    wanted = {k: headers.get(k, "") for k in ("svix-id", "svix-timestamp", "svix-signature")}
    if not all(wanted.values()):
        missing = ", ".join(k for k, v in wanted.items() if not v)
        raise SignatureError(f"missing header(s): {missing}")
    try:
        _webhook(secret).verify(body, wanted)
    except WebhookVerificationError as exc:
        raise SignatureError(str(exc) or "bad signature") from None
    except ValueError:  # malformed signature header, or a body that is not UTF-8
        raise SignatureError("malformed signature header or body") from None


def sign(
    secret: str, body: bytes, *, msg_id: str | None = None, timestamp: float | None = None
) -> dict[str, str]:
    """Svix headers for ``body``, signed with the svix library exactly as Svix signs."""
    from datetime import datetime, timezone

    from svix.webhooks import Webhook

    msg_id = msg_id or "msg_" + secrets.token_hex(12)
    when = datetime.fromtimestamp(time.time() if timestamp is None else timestamp, timezone.utc)
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(int(when.timestamp())),
        "svix-signature": signature,
        "content-type": "application/json",
    }


def new_secret() -> str:
    """A fresh signing secret in Svix's format (``whsec_`` + base64 of 24 random bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
