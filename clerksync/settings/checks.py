"""The settings' validators: each returns a problem (for a one-line message) or None, never
raises, and never quotes a secret back."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlsplit


def check_mongodb_url(value: str) -> str | None:
    if not value.startswith(("mongodb://", "mongodb+srv://")):
        return "must start with mongodb:// or mongodb+srv://"
    if any(c.isspace() for c in value):  # pymongo takes "a b" for a host, then times out
        return "has a space or line break in it (a space in a password is written %20)"
    hosts = value.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    if not hosts:
        return "has no host"
    for host in hosts.split(","):  # a replica set lists several host:port pairs
        name, port = host, ""
        if ":" in host and not host.endswith("]"):  # [::1] alone is an IPv6 host
            name, _, port = host.rpartition(":")
            if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
                return f"has a port that is not a number from 1 to 65535 ({port[:10]!r})"
        if not name:
            return "has no host"
    return None


def check_database_name(value: str) -> str | None:
    if len(value) > 63 or any(c in value for c in '/\\. "$*<>:|?\0'):
        return (
            "is not a valid MongoDB database name "
            "(no spaces, dots, slashes or $; 63 characters at most)"
        )
    return None


def check_secret_key(value: str) -> str | None:
    if not value.startswith(("sk_test_", "sk_live_")):
        return "must be a Clerk secret key starting with sk_test_ or sk_live_"
    body = value[len("sk_test_") :]
    if len(body) < 20 or not body.isascii() or not body.isalnum():
        return "is not a whole Clerk secret key (too short, or odd characters: was it cut?)"
    return None


def check_publishable_key(value: str) -> str | None:
    if not value.startswith(("pk_test_", "pk_live_")):
        return "must start with pk_test_ or pk_live_"
    return None


def check_webhook_secret(value: str) -> str | None:
    if not value.startswith("whsec_"):
        try:
            bare = len(base64.b64decode(value + "==", validate=True)) >= 24
        except (binascii.Error, ValueError):
            bare = False
        if bare:  # the secret without its prefix
            return "must start with whsec_ (put whsec_ in front of it: the Signing Secret has it)"
        return "must start with whsec_ (copy the Signing Secret, not the endpoint id)"
    body = value[len("whsec_") :]
    # What svix decodes (it adds '==' and skips extra padding): a key with its '=' padding,
    # without it, or with more of it; strict about anything else.
    digits = body.rstrip("=")
    try:
        key = base64.b64decode(digits + "=" * (-len(digits) % 4), validate=True)
    except (binascii.Error, ValueError):
        return "is not valid base64 after whsec_ (was it cut when copied?)"
    if len(key) < 16:
        return "decodes to a key shorter than 16 bytes (was it cut when copied?)"
    return None


def check_http_url(value: str) -> str | None:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a port out of range)
    except ValueError:
        return "is not a valid URL (check the host and port)"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL"
    return None


def check_jwt_key(value: str) -> str | None:
    """``CLERK_JWT_KEY``: the instance's PEM public key (Dashboard → API keys → Show JWT
    public key → PEM), what the SDK verifies session tokens with, networkless."""
    if "-----BEGIN PUBLIC KEY-----" not in value or "-----END PUBLIC KEY-----" not in value:
        return (
            "must be the PEM public key, from -----BEGIN PUBLIC KEY----- to "
            "-----END PUBLIC KEY----- (not the JWKS URL or the secret key)"
        )
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(value.encode())
    except (ValueError, TypeError):
        return "is not a readable PEM public key (was it cut when copied?)"
    if not isinstance(key, RSAPublicKey):
        return "is not an RSA public key (Clerk signs session tokens with RS256)"
    return None


def check_authorized_parties(value: str) -> str | None:
    """``CLERK_AUTHORIZED_PARTIES``: comma-separated origins (``https://app.example.com``),
    what a session token's ``azp`` must be one of."""
    origins = [part.strip() for part in value.split(",") if part.strip()]
    if not origins:
        return "names no origin (comma-separated, e.g. https://app.example.com)"
    for origin in origins:
        try:
            parts = urlsplit(origin)
            parts.port  # noqa: B018  (raises ValueError on a port out of range)
        except ValueError:
            return f"has {origin[:60]!r}, not a valid origin"
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            return (
                f"has {origin[:60]!r}: each must be an origin, scheme://host[:port], "
                "such as https://app.example.com (no path)"
            )
    return None
