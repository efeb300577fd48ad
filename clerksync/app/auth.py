"""A request's Clerk session token, authenticated with the official SDK's
``authenticate_request``: the caller's Clerk user id, or ``NotAuthenticated`` (a 401).

The token is the ``Authorization: Bearer`` header or the ``__session`` cookie (the SDK
reads both). With ``CLERK_JWT_KEY`` (the instance's PEM public key) verification is
networkless. Without it the instance's keys come from ``GET /jwks`` through the gateway
(``CLERK_API_URL``, the gateway's timeout) and are kept: the SDK's own JWKS fetch always
goes to api.clerk.com and retries an outage ten times over, on the request's time. A token
naming a key id (``kid``) not among those kept fetches them again (Clerk rotated its key), at
most once a minute, so made-up key ids cannot make every request call Clerk.

Only session tokens are accepted (``accepts_token``): a machine token would make the SDK
call Clerk to verify it. Anything else is a 401 with a short reason
(``token-expired``…); no part of a token is ever logged or kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from clerksync.clerk.gateway import ClerkGateway
from clerksync.errors import ClerkApiError, ConfigError, NotAuthenticated
from clerksync.kinds.user import CLERK_USER_ID
from clerksync.settings import Settings

#: seconds between two fetches of the instance's keys for a token none of them verifies
JWKS_REFRESH = 60.0
#: the SDK's default: clocks a little apart do not turn a fresh token away
CLOCK_SKEW_MS = 5000


class _Request:
    """What the SDK reads of a request: headers, looked up whatever their case."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        import httpx

        self.headers = headers if hasattr(headers, "getlist") else httpx.Headers(headers)


class SessionAuth:
    """Authenticates Clerk session tokens (module docstring). ``jwt_key``: networkless;
    otherwise ``gateway`` fetches the instance's JWKS."""

    def __init__(
        self,
        *,
        jwt_key: str | None = None,
        gateway: ClerkGateway | None = None,
        authorized_parties: list[str] | None = None,
        refresh_every: float = JWKS_REFRESH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if jwt_key is None and gateway is None:
            raise ConfigError(
                "set CLERK_JWT_KEY (the instance's PEM public key) or CLERK_SECRET_KEY: "
                "session tokens cannot be verified without one"
            )
        self.jwt_key = jwt_key
        self.gateway = gateway
        self.authorized_parties = authorized_parties
        self.refresh_every = refresh_every
        self.clock = clock
        self._keys: dict[str, str] = {}  # kid -> PEM, from the JWKS
        self._fetched = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, gateway: ClerkGateway | None) -> SessionAuth:
        settings.check("CLERK_JWT_KEY", "CLERK_AUTHORIZED_PARTIES")
        return cls(
            jwt_key=settings.clerk_jwt_key,
            gateway=gateway,
            authorized_parties=settings.authorized_origins,
        )

    @property
    def needs_keys(self) -> bool:
        """Would authenticating now call Clerk (no PEM configured, none fetched yet)?"""
        return self.jwt_key is None and not self._keys

    def user_id(self, headers: Mapping[str, str]) -> str:
        """The Clerk user id of the request's session, or ``NotAuthenticated``. May call
        Clerk for the instance's keys (``needs_keys``): run it off an event loop then."""
        request = _Request(headers)
        if self.jwt_key is not None:
            return self._verified(request, [self.jwt_key])
        return self._verified(request, self._keys_for(_key_id(request.headers)))

    def _verified(self, request: _Request, keys: list[str]) -> str:
        from clerk_backend_api.security import authenticate_request
        from clerk_backend_api.security.types import AuthenticateRequestOptions

        state: Any = None
        for key in keys:  # one, unless the token names no key id
            options = AuthenticateRequestOptions(
                jwt_key=key,
                authorized_parties=self.authorized_parties,
                clock_skew_in_ms=CLOCK_SKEW_MS,
                accepts_token=["session_token"],
            )
            state = authenticate_request(request, options)
            if state.is_signed_in:
                break
        if state is None:
            raise NotAuthenticated(
                "the session token names a key the instance does not have",
                reason="jwk-kid-mismatch",
            )
        if not state.is_signed_in:
            reason = state.reason.value[0] if state.reason is not None else "signed-out"
            raise NotAuthenticated(f"not signed in ({reason})", reason=reason)
        claims = state.payload or {}
        subject = claims.get("sub")
        if not isinstance(subject, str) or not CLERK_USER_ID.match(subject):
            raise NotAuthenticated("the session token names no Clerk user", reason="token-invalid")
        if not isinstance(claims.get("exp"), (int, float)):  # PyJWT checks exp only if present
            raise NotAuthenticated("the session token has no expiry", reason="token-invalid")
        return subject

    def _keys_for(self, kid: str | None) -> list[str]:
        """The PEMs to verify a token naming ``kid`` with: that key's, fetched again when it
        is not among those kept (a rotation), at most once per ``refresh_every``; all of
        them for a token that names none (the SDK then says what is wrong with it)."""
        keys = self._keys
        if not keys or (kid is not None and kid not in keys):
            keys = self._fetch_keys(stale_after=0 if not keys else self.refresh_every)
        if kid is None:
            return list(keys.values())
        return [keys[kid]] if kid in keys else []

    def _fetch_keys(self, *, stale_after: float) -> dict[str, str]:
        with self._lock:
            if self._keys and self.clock() - self._fetched < stale_after:
                return self._keys
            assert self.gateway is not None
            try:
                jwks = self.gateway.get_jwks()
            finally:
                self._fetched = self.clock()
            keys = {
                str(key.get("kid")): pem
                for key in jwks["keys"]
                if isinstance(key, dict) and (pem := _pem(key)) is not None
            }
            if not keys:
                raise ClerkApiError("Clerk's JWKS holds no RSA signing key")
            self._keys = keys
            return keys


def _key_id(headers: Mapping[str, str]) -> str | None:
    """The ``kid`` a request's session token names (unverified: it only picks the key the
    SDK then verifies with), found where the SDK finds the token; None when there is none."""
    import jwt

    token = headers.get("Authorization")
    if token is not None:
        token = token.replace("Bearer ", "")
    else:
        from http.cookies import CookieError, SimpleCookie

        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(headers.get("cookie") or "")
        except CookieError:
            return None
        token = next((m.value for k, m in cookies.items() if k.startswith("__session")), None)
    if not token:
        return None
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.InvalidTokenError:
        return None
    return kid if isinstance(kid, str) else None


def _pem(jwk: Any) -> str | None:
    """An RSA JWK as the PEM the SDK verifies with; None for anything else."""
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
    from jwt.algorithms import RSAAlgorithm

    if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
        return None
    try:
        key = RSAAlgorithm.from_jwk(json.dumps(jwk))
    except Exception:  # a key PyJWT cannot read is no key of ours
        return None
    if not isinstance(key, RSAPublicKey):
        return None
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()
