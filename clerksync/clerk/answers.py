"""Clerk's failures as ``ClerkApiError``s: an HTTP answer (its status, Clerk's error code,
``Retry-After``, a message a user can act on), a transport failure (status 0), and the
answers that mean a feature is off on the instance (``FeatureDisabled``: a note, not a
failure, for reconcile and doctor)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping

from clerksync.errors import ClerkApiError


class FeatureDisabled(ClerkApiError):
    """A list answered that its feature is off on this instance (what the list's ``off``
    names: billing's 403 or 404, say): a note for reconcile and doctor, not a failure."""


class OrganizationsDisabled(FeatureDisabled):
    """The instance has no organizations feature (Clerk's 403
    ``organization_not_enabled_in_instance``), whatever was asked."""


ORGS_DISABLED_CODE = "organization_not_enabled_in_instance"


@contextlib.contextmanager
def transport_errors(unreachable_url: str | None = None) -> Iterator[None]:
    """httpx's timeouts and connection failures as ``ClerkApiError`` (status 0), for SDK
    calls and raw requests alike. ``unreachable_url`` (no answer from Clerk yet, and the
    caller fails fast): a connection that could not be made is ``unreachable`` and names
    that URL, not a blip to retry for seconds."""
    import httpx

    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        if unreachable_url is not None:
            reason = "no answer" if isinstance(exc, httpx.ConnectTimeout) else _reason(exc)
            raise ClerkApiError(
                f"cannot connect to the Clerk API at {unreachable_url} ({reason}): check "
                "CLERK_API_URL (leave it unset for Clerk's own) and the network",
                status=0,
                unreachable=True,
            ) from None
        raise ClerkApiError(
            f"cannot reach the Clerk API ({exc.__class__.__name__}); check CLERK_API_URL "
            "and the network",
            status=0,
        ) from None
    except httpx.TimeoutException:
        raise ClerkApiError("Clerk did not answer in time", status=0) from None
    except httpx.TransportError as exc:
        raise ClerkApiError(
            f"cannot reach the Clerk API ({exc.__class__.__name__}); check CLERK_API_URL "
            "and the network",
            status=0,
        ) from None


def _reason(exc: Exception) -> str:
    """A connection failure in a few words (never the URL's credentials: there are none in it,
    the key goes in a header)."""
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service" in text or "nodename" in text or "resolv" in text or "getaddrinfo" in text:
        return "the host name does not resolve"
    return exc.__class__.__name__


def api_error(status: int, headers: Mapping[str, str], body: str) -> ClerkApiError:
    retry_after: float | None = None
    raw = headers.get("retry-after")
    if raw:
        try:
            retry_after = max(0.0, float(raw))
        except ValueError:
            retry_after = None
    detail = ""
    code = None
    try:
        errors = json.loads(body).get("errors") or []
        if errors:
            detail = f": {errors[0].get('long_message') or errors[0].get('message')}"
            found = errors[0].get("code")
            code = found if isinstance(found, str) else None
    except (ValueError, AttributeError):
        pass
    if status == 403 and code == ORGS_DISABLED_CODE:
        return OrganizationsDisabled(
            "organizations are not enabled on this Clerk instance (Dashboard → Configure → "
            "Organizations)",
            status=status,
            code=code,
        )
    if status == 401:
        message = (
            "Clerk rejected CLERK_SECRET_KEY (401). Copy a current key from Clerk Dashboard → "
            "Configure → API keys, and check it belongs to this instance"
        )
    elif status == 429:
        message = "Clerk rate limit reached (429)"
    elif status == 404:
        message = f"not found in Clerk (404){detail}"
    else:
        message = f"Clerk answered {status}{detail}"
    return ClerkApiError(message, status=status, retry_after=retry_after, code=code)
