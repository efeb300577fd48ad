"""What a Clerk key says on its own: the instance kind (``sk_test_`` / ``sk_live_``), and
the Backend API every key talks to unless told otherwise."""

from __future__ import annotations

DEFAULT_API_URL = "https://api.clerk.com/v1"


def instance_kind(key: str | None) -> str | None:
    """``test`` or ``live`` from an ``sk_``/``pk_`` key; None when it says neither."""
    if not key:
        return None
    for kind in ("test", "live"):
        if key.startswith((f"sk_{kind}_", f"pk_{kind}_")):
            return kind
    return None
