"""The Clerk key: it answers, which kind of instance it is, and the organization counts
against MongoDB's."""

from __future__ import annotations

from clerksync.doctor.checks import Check, ok
from clerksync.errors import ClerkApiError, ClerkSyncError
from clerksync.settings import Settings, mask


def check_clerk(settings: Settings) -> tuple[list[Check], int | None]:
    if not settings.clerk_secret_key or settings.problems("CLERK_SECRET_KEY", "CLERK_API_URL"):
        return [], None
    from clerksync.clerk.gateway import ClerkGateway

    gateway = ClerkGateway(
        settings.clerk_secret_key, api_url=settings.clerk_api_url, timeout_ms=5000
    )
    try:
        total = gateway.count_users()
    except ClerkSyncError as exc:
        if not isinstance(exc, ClerkApiError):
            exc = ClerkApiError(str(exc))
        hint = (
            "copy a current secret key from Dashboard → Configure → API keys"
            if exc.status in (401, 403)
            else "check CLERK_API_URL and your network"
        )
        return [
            Check("Clerk API", "fail", f"{exc} (key {mask(settings.clerk_secret_key)})", hint)
        ], None
    return [
        ok("Clerk API", f"key {mask(settings.clerk_secret_key)} accepted; {total} Clerk users")
    ], total


def check_organization_counts(settings: Settings) -> Check | None:
    """Clerk's organization count against MongoDB's; None when either side cannot answer
    (the MongoDB and Clerk API checks report why). No organizations feature: a note. An
    error nobody foresaw is a failing check, never a traceback."""
    try:
        return _organization_counts(settings)
    except Exception as exc:
        return Check(
            "organization counts", "fail", f"could not check: {exc.__class__.__name__}", ""
        )


def _organization_counts(settings: Settings) -> Check | None:
    if not settings.clerk_secret_key or "CLERK_SECRET_KEY" in dict(settings.problems()):
        return None
    from clerksync.clerk.gateway import ClerkGateway, OrganizationsDisabled
    from clerksync.store.users import connect

    gateway = ClerkGateway(
        settings.clerk_secret_key, api_url=settings.clerk_api_url, timeout_ms=5000
    )
    try:
        clerk_orgs = gateway.count_organizations()
    except OrganizationsDisabled:
        return ok("organization counts", "organizations are not enabled on this Clerk instance")
    except ClerkApiError:
        return None
    try:
        store = connect(settings)
    except ClerkSyncError:
        return None
    try:
        mongo_orgs = store.orgs.organizations.count_documents({})
    except Exception:  # pymongo errors: the MongoDB check reports them
        return None
    finally:
        store.close()
    detail = f"Clerk {clerk_orgs}, MongoDB {mongo_orgs}"
    if clerk_orgs == mongo_orgs:
        return ok("organization counts", detail)
    return Check(
        "organization counts", "warn", detail, "run `clerksync reconcile` to bring MongoDB in line"
    )
