"""One exception family; every message says what to do next.

The CLI turns these into one line on stderr and an exit code in one place
(``clerksync.cli.main``), so no traceback ever shows settings or keys.
"""

from __future__ import annotations


class ClerkSyncError(Exception):
    """Base of every error clerksync reports to a user. ``exit_code`` follows the contract."""

    exit_code = 1


class ConfigError(ClerkSyncError):
    """A variable is missing or malformed, or an env file cannot be read: exit 2."""

    exit_code = 2


class UsageError(ClerkSyncError):
    """The command line asks for something that cannot be done as asked: exit 2."""

    exit_code = 2


class StoreUnavailable(ClerkSyncError):
    """MongoDB did not answer or refused the operation."""


class IndexRefused(StoreUnavailable):
    """An index that is not clerksync's own refused a write (the app's unique ``username``,
    say): a failure, never a success. ``index`` names it; the message says what to do."""

    def __init__(
        self, message: str, *, index: str, collection: str, keys: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.index = index
        self.collection = collection
        self.keys = keys


class NotFound(ClerkSyncError):
    """No user matches the id, Mongo id or email given."""


class UserNotFound(NotFound):
    """Clerk has no user with this id (``GET /users/{id}`` answered 404): nothing is written."""


class UserDeleted(NotFound):
    """The user was deleted (a ``user.deleted`` left its tombstone): never brought back."""


class NotAuthenticated(ClerkSyncError):
    """A request without a valid Clerk session token (missing, malformed, expired, not yet
    valid, signed by another key, for another origin): a 401. ``reason`` is a short code
    (``token-expired``…); no part of the token is ever kept in it."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class Ambiguous(ClerkSyncError):
    """More than one user matches: the message lists the candidates."""


class InvalidEvent(ClerkSyncError):
    """A signed body that is not a Clerk event clerksync can apply."""


class ClerkApiError(ClerkSyncError):
    """The Clerk Backend API refused or failed a request.

    ``status`` is the HTTP status (0 when no answer came), ``retry_after`` the
    seconds Clerk asked us to wait on a 429, ``code`` Clerk's error code when it gave one
    (``organization_not_enabled_in_instance``…). ``unreachable``: no connection could be
    made to a Clerk API that never answered (a wrong ``CLERK_API_URL``): retrying cannot
    help.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        retry_after: float | None = None,
        code: str | None = None,
        unreachable: bool = False,
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.code = code
        self.unreachable = unreachable

    @property
    def retryable(self) -> bool:
        if self.unreachable:
            return False
        return self.status == 0 or self.status == 429 or self.status >= 500
