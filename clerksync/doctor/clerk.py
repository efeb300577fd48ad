"""The Clerk key: it answers, and each kind's count in Clerk against MongoDB's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clerksync.doctor.checks import Check, ok
from clerksync.errors import ClerkApiError, ClerkSyncError
from clerksync.kinds.base import Kind
from clerksync.kinds.user import USER

if TYPE_CHECKING:
    from clerksync.clerk.gateway import ClerkGateway
    from clerksync.store.database import Store
from clerksync.settings import Settings, mask


def check_clerk(settings: Settings) -> tuple[list[Check], int | None]:
    if not settings.clerk_secret_key or settings.problems("CLERK_SECRET_KEY", "CLERK_API_URL"):
        return [], None
    from clerksync.clerk.gateway import ClerkGateway

    gateway = ClerkGateway(
        settings.clerk_secret_key, api_url=settings.clerk_api_url, timeout_ms=5000, fail_fast=True
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


def check_kind_counts(settings: Settings) -> list[Check]:
    """Clerk's count of each kind the app keeps but users (those are ``user counts``)
    against MongoDB's, one check each (``organization counts``…); nothing when either side
    cannot answer (the MongoDB and Clerk API checks report why). A kind whose feature is
    off (no organizations, no billing): a note. An error nobody foresaw is a failing check,
    never a traceback."""
    problems = dict(settings.problems())
    if not settings.clerk_secret_key or {"CLERK_SECRET_KEY", "MONGODB_URL", "MONGODB_DB"} & set(
        problems
    ):
        return []  # the variables' checks say why
    try:
        return _kind_counts(settings)
    except Exception as exc:
        return [Check("counts", "fail", f"could not check: {exc.__class__.__name__}", "")]


def _kind_counts(settings: Settings) -> list[Check]:
    assert settings.clerk_secret_key is not None
    from clerksync.clerk.gateway import ClerkGateway
    from clerksync.store.connect import connect

    gateway = ClerkGateway(
        settings.clerk_secret_key, api_url=settings.clerk_api_url, timeout_ms=5000, fail_fast=True
    )
    try:
        store = connect(settings)
    except ClerkSyncError:
        return []
    try:
        return [
            check
            for kind in store.kinds
            if kind is not USER and (check := _kind_count(store, gateway, kind)) is not None
        ]
    finally:
        store.close()


def _kind_count(store: Store, gateway: ClerkGateway, kind: Kind) -> Check | None:
    from clerksync.clerk.answers import FeatureDisabled, OrganizationsDisabled

    name = f"{kind.name} counts"
    listing = kind.listing
    if listing is None:
        return None
    try:
        try:
            in_clerk = gateway.count(listing.path, params=listing.params, off=listing.off)
        except OrganizationsDisabled:
            return ok(name, "organizations are not enabled on this Clerk instance")
        except FeatureDisabled:
            return ok(name, listing.off_note)
        except ClerkApiError:
            return None
        try:
            in_mongo = store.count(kind)
        except ClerkSyncError:  # the MongoDB check reports it
            return None
    except Exception as exc:
        return Check(name, "fail", f"could not check: {exc.__class__.__name__}", "")
    detail = f"Clerk {in_clerk}, MongoDB {in_mongo}"
    if in_clerk == in_mongo:
        return ok(name, detail)
    return Check(
        name,
        "warn",
        detail,
        "run `clerksync reconcile` to bring MongoDB in line",
        ("clerksync reconcile",),
    )
