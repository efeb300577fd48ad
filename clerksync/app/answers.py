"""What a request for the caller's document answers when it cannot have it: the HTTP
status, a short detail and headers, shared by ``clerksync.fastapi`` and the receiver's
``GET /api/users/me`` so both answer alike. Nothing here quotes a token."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from clerksync.errors import (
    ClerkApiError,
    ClerkSyncError,
    NotAuthenticated,
    StoreUnavailable,
    UserDeleted,
    UserNotFound,
)

log = logging.getLogger("clerksync.app")

#: seconds a 503 asks the caller to wait when Clerk named no time
RETRY_AFTER = 5


@dataclass(frozen=True)
class Refusal:
    status: int
    detail: str
    headers: dict[str, str] = field(default_factory=dict)


def refusal(exc: ClerkSyncError) -> Refusal | None:
    """The answer for ``exc``, or None for an error this does not know (the framework's
    500: never a success, never a guess). A deleted user or one Clerk does not have is a
    401 like a bad token: the session names nobody who may use the app. 401s are logged at
    debug level only: anyone can send them by the thousand."""
    bearer = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    if isinstance(exc, NotAuthenticated):
        log.debug("request refused: 401 %s", exc.reason)
        return Refusal(401, f"not authenticated: {exc.reason}", bearer)
    if isinstance(exc, UserDeleted):
        log.debug("request refused: 401 user deleted")
        return Refusal(401, "the user was deleted", bearer)
    if isinstance(exc, UserNotFound):
        log.debug("request refused: 401 user not in Clerk")
        return Refusal(401, "Clerk has no such user", bearer)
    if isinstance(exc, (ClerkApiError, StoreUnavailable)):
        retry = getattr(exc, "retry_after", None) or RETRY_AFTER
        where = "Clerk" if isinstance(exc, ClerkApiError) else "the database"
        log.warning("request refused: 503, %s failed: %s", where, exc)
        return Refusal(
            503, f"{where} is unavailable, try again shortly", {"Retry-After": f"{retry:.0f}"}
        )
    return None
