"""The webhook receiver's checks: a signed probe and an unsigned one, the running
`serve --dev` and its secret, and whether Clerk can reach the public URL."""

from __future__ import annotations

import json
from typing import Any

from clerksync.doctor.checks import Check, ok
from clerksync.settings import Settings

FORWARD_HINT = (
    "Clerk cannot post to this machine: run `clerk webhooks listen --forward-to "
    "http://127.0.0.1:8000/api/webhooks/clerk` (Clerk's CLI), add the URL it prints as an "
    "endpoint in Dashboard → Webhooks, and set WEBHOOK_SECRET to that endpoint's secret; "
    "or set NEXT_PUBLIC_URL to your deployed app"
)


def unreachable_from_clerk(url: str) -> str | None:
    """Why Clerk's servers cannot post to ``url`` (loopback, private, link-local), or None."""
    import ipaddress
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal", ".lan")):
        return f"{host} is this machine or a local network name"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_loopback:
        return f"{host} is this machine (loopback)"
    if address.is_private or address.is_link_local or address.is_unspecified:
        return f"{host} is a private address"
    return None


def dev_receiver(settings: Settings) -> dict[str, Any] | None:
    """The ``serve`` running on this state dir (``serve.json``), with its dev secret if any."""
    from clerksync.devtools.localstate import running_server

    return running_server(settings.state_dir)


def effective_secret(settings: Settings) -> str | None:
    """WEBHOOK_SECRET, else the secret of a running ``serve --dev`` (as ``send`` uses it)."""
    if settings.webhook_secret:
        return settings.webhook_secret
    running = dev_receiver(settings)
    return running["secret"] if running and running["dev"] else None


def probe_receiver(settings: Settings, url: str, secret: str | None = None) -> Check | None:
    """Unsigned must be refused (400), signed-and-harmless accepted (2xx). None: nobody answers.

    Both requests carry a svix-id starting with ``PROBE_PREFIX``: the delivery
    log keeps them apart, so a doctor run never counts as a delivery.
    """
    import secrets as random

    import httpx

    from clerksync.clerk.tls import tls_context
    from clerksync.clerk.webhooks import sign
    from clerksync.deliverylog.readers import PROBE_PREFIX
    from clerksync.settings import check_webhook_secret

    body = json.dumps({"type": "clerksync.doctor", "object": "event", "data": {}}).encode()
    name = f"receiver {url}"
    probe_id = PROBE_PREFIX + random.token_hex(8)
    unsigned_headers = {"content-type": "application/json", "svix-id": probe_id + "_unsigned"}
    try:
        with httpx.Client(timeout=3.0, verify=tls_context()) as http:
            unsigned = http.post(url, content=body, headers=unsigned_headers)
            if unsigned.status_code == 404:
                return Check(
                    name,
                    "fail",
                    "404: nothing is mounted at this path",
                    "mount the receiver at /api/webhooks/clerk (or run `clerksync serve`)",
                )
            if unsigned.status_code in (401, 403):
                return Check(
                    name,
                    "fail",
                    f"{unsigned.status_code}: the route is behind auth",
                    "make /api/webhooks/clerk public in your auth middleware "
                    "(Clerk: add it to the public routes)",
                )
            if unsigned.is_success:
                return Check(
                    name,
                    "fail",
                    "accepted an unsigned request",
                    "verify the svix signature before acting on a delivery",
                )
            if not secret or check_webhook_secret(secret):
                # no usable secret to sign with: the WEBHOOK_SECRET check says why
                return ok(name, f"refused an unsigned request ({unsigned.status_code})")
            signed = http.post(url, content=body, headers=sign(secret, body, msg_id=probe_id))
    except (httpx.HTTPError, httpx.InvalidURL, ValueError):
        return None
    if signed.is_success:
        return ok(name, "refuses unsigned requests, accepts signed ones")
    return Check(
        name,
        "fail",
        f"refused a correctly signed request ({signed.status_code})",
        "WEBHOOK_SECRET differs from the endpoint's secret, or the body is parsed "
        "before verification (verify the raw bytes)",
    )


def check_webhook(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    targets = []
    running = dev_receiver(settings)
    secret = effective_secret(settings)
    if settings.problems("NEXT_PUBLIC_URL"):
        settings = _without_public_url(settings)
    if settings.webhook_url and not unreachable_from_clerk(settings.webhook_url):
        checks.append(
            ok(
                "webhook endpoint",
                f"Clerk must post to {settings.webhook_url} "
                "(Dashboard → Webhooks; events user.created, user.updated, user.deleted)",
            )
        )
    if settings.webhook_url:
        targets.append(settings.webhook_url)
    if running:  # where the local receiver is; never a guess at a port (another app's, maybe)
        targets.append(running["url"])
    if not targets:
        return checks + [
            Check(
                "receiver",
                "warn",
                "no receiver to probe: no `clerksync serve` is running here "
                "(none recorded in serve.json) and NEXT_PUBLIC_URL is unset",
                "start one with `clerksync serve`, or set NEXT_PUBLIC_URL to your app",
            )
        ]
    answered = False
    for url in dict.fromkeys(targets):
        # a running `serve --dev` verifies with its own secret, whatever WEBHOOK_SECRET says
        signing = (
            running["secret"] if running and running["dev"] and url == running["url"] else secret
        )
        result = probe_receiver(settings, url, signing)
        if result is not None:
            answered = True
            checks.append(result)
    if not answered:
        checks.append(
            Check(
                "receiver",
                "warn",
                "no receiver answered at " + ", ".join(targets),
                "start one with `clerksync serve`, or deploy your app",
            )
        )
    return checks


def _without_public_url(settings: Settings) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, public_url=None)
