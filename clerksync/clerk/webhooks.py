"""Svix signatures: verify a delivery's raw bytes, sign a test one, make a signing secret.

Signatures cover ``{svix-id}.{svix-timestamp}.{raw body}``, so the raw bytes are
verified before anything parses them. svix's ``Webhook.verify`` returns None
in 2.x, and a malformed signature header raises plain ``ValueError``s
(base64, unpacking) besides ``WebhookVerificationError``: all of it is a 400.
"""

from __future__ import annotations

import base64
import functools
import secrets
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

MAX_BODY = 1024 * 1024


class SignatureError(Exception):
    """The delivery is not provably from Clerk: missing headers, bad or stale signature."""


_LOADING = threading.Lock()
_svix: ModuleType | None = None


def svix_webhooks() -> ModuleType:
    """svix's own ``svix/webhooks.py`` (``Webhook``, ``WebhookVerificationError``), run from
    its installed file without the ``svix`` package's ``__init__``, which imports svix's
    whole API client: 0.7 s of CPU before the first delivery is verified or a test one
    signed, for code nothing here uses. The app's own ``svix.webhooks`` when it has imported
    it; the usual import should a release make the module need its package (a relative
    import fails here). Loaded once (a lock): two copies would be two exception classes."""
    global _svix
    if _svix is not None:
        return _svix
    import importlib.util

    with _LOADING:
        if _svix is not None:
            return _svix
        if "svix.webhooks" in sys.modules:
            _svix = sys.modules["svix.webhooks"]
            return _svix
        try:
            package = importlib.util.find_spec("svix")  # found, not run
            if package is None or package.origin is None:
                raise ImportError("svix is not installed as a package")
            path = Path(package.origin).with_name("webhooks.py")
            spec = importlib.util.spec_from_file_location("_clerksync_svix_webhooks", path)
            if spec is None or spec.loader is None:
                raise ImportError(f"no loader for {path}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.Webhook, module.WebhookVerificationError  # noqa: B018  (what is used here)
        except Exception:
            import svix.webhooks as module
        _svix = module
        return module


@functools.lru_cache(maxsize=4)
def _webhook(secret: str) -> Any:
    """svix's verifier for a secret, made once: it decodes the secret's base64 when made."""
    return svix_webhooks().Webhook(secret)


def verify(secret: str, body: bytes, headers: Mapping[str, str]) -> None:
    """Raise SignatureError unless ``body`` carries a valid, fresh svix signature."""
    WebhookVerificationError = svix_webhooks().WebhookVerificationError  # noqa: N806

    wanted = {k: headers.get(k, "") for k in ("svix-id", "svix-timestamp", "svix-signature")}
    if not all(wanted.values()):
        missing = ", ".join(k for k, v in wanted.items() if not v)
        raise SignatureError(f"missing header(s): {missing}")
    try:
        _webhook(secret).verify(body, wanted)
    except WebhookVerificationError as exc:
        raise SignatureError(str(exc) or "bad signature") from None
    except ValueError:  # malformed signature header, or a body that is not UTF-8
        raise SignatureError("malformed signature header or body") from None


def sign(
    secret: str, body: bytes, *, msg_id: str | None = None, timestamp: float | None = None
) -> dict[str, str]:
    """Svix headers for ``body``, signed with the svix library exactly as Svix signs."""
    from datetime import datetime, timezone

    msg_id = msg_id or "msg_" + secrets.token_hex(12)
    when = datetime.fromtimestamp(time.time() if timestamp is None else timestamp, timezone.utc)
    signature = svix_webhooks().Webhook(secret).sign(msg_id, when, body.decode())
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(int(when.timestamp())),
        "svix-signature": signature,
        "content-type": "application/json",
    }


def new_secret() -> str:
    """A fresh signing secret in Svix's format (``whsec_`` + base64 of 24 random bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
