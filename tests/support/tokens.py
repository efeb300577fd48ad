"""Clerk session tokens for the tests: RS256 JWTs, shaped as Clerk's (``sub``, ``sid``,
``azp``, ``iss``, ``iat``, ``nbf``, ``exp``, a ``kid`` in the header), signed with a key pair
made once per test process. The fake Clerk serves its public half as the instance's JWKS
(``GET /jwks``), and ``public_pem`` is what a test sets as ``CLERK_JWT_KEY``."""

from __future__ import annotations

import base64
import functools
import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KID = "ins_2fakeclerk0000000000000"
ISSUER = "https://clerk.fake.example"
ORIGIN = "http://localhost:3000"


@functools.cache
def signing_key(name: str = "instance") -> rsa.RSAPrivateKey:
    """The instance's key (``instance``), or another one (a wrong key), made once each."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(name: str = "instance") -> str:
    return (
        signing_key(name)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def jwks(name: str = "instance", kid: str = KID) -> dict[str, Any]:
    """The JWKS Clerk's ``GET /jwks`` answers for the key."""
    from jwt.algorithms import RSAAlgorithm

    jwk = json.loads(RSAAlgorithm.to_jwk(signing_key(name).public_key()))
    return {"keys": [{**jwk, "kid": kid, "use": "sig", "alg": "RS256"}]}


def session_token(
    user_id: str,
    *,
    azp: str = ORIGIN,
    lifetime: float = 60,
    issued: float | None = None,
    not_before: float | None = None,
    key: str = "instance",
    kid: str = KID,
    **claims: Any,
) -> str:
    """A session token for ``user_id``, valid for ``lifetime`` seconds from ``issued`` (now)."""
    now = time.time() if issued is None else issued
    payload = {
        "sub": user_id,
        "sid": "sess_" + user_id.removeprefix("user_"),
        "azp": azp,
        "iss": ISSUER,
        "iat": int(now),
        "nbf": int(now if not_before is None else not_before),
        "exp": int(now + lifetime),
        "v": 2,
        **claims,
    }
    return jwt.encode(payload, signing_key(key), algorithm="RS256", headers={"kid": kid})


def unsigned_token(user_id: str) -> str:
    """The same claims under ``alg: none`` and no signature."""

    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    now = int(time.time())
    header = {"alg": "none", "typ": "JWT", "kid": KID}
    claims = {"sub": user_id, "azp": ORIGIN, "iat": now, "nbf": now, "exp": now + 60}
    return f"{part(header)}.{part(claims)}."


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
