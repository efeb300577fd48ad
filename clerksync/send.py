"""``clerksync send``: build a realistic Clerk event, sign it with the svix library, post it.

A delivery signed ``v1,test_signature`` proves nothing; this one verifies
exactly as Clerk's would, so a non-2xx answer says something about the
receiver. ``diagnose`` turns that answer into the likely cause.

``serve --dev`` leaves its fresh secret and URL in ``<state dir>/dev-secret.json``
(mode 0600) for as long as it runs; ``send`` finds them there.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clerksync.config import WEBHOOK_PATH, Settings
from clerksync.errors import UsageError
from clerksync.payloads import clerk_user, deleted_user, event

EVENT_TYPES = ("user.created", "user.updated", "user.deleted")
LOCAL_URL = "http://127.0.0.1:8000" + WEBHOOK_PATH
DEV_SECRET_FILE = "dev-secret.json"


def write_dev_secret(state_dir: Path, secret: str, url: str) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / DEV_SECRET_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"secret": secret, "url": url, "pid": os.getpid()}, handle)
    return path


def read_dev_secret(state_dir: Path) -> dict[str, str] | None:
    """The running ``serve --dev``'s secret and URL; None if none runs."""
    try:
        info = json.loads((state_dir / DEV_SECRET_FILE).read_text())
        os.kill(int(info["pid"]), 0)
        return {"secret": str(info["secret"]), "url": str(info["url"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def build_event(
    event_type: str,
    *,
    user_id: str | None = None,
    email: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    username: str | None = None,
    data_file: Path | None = None,
) -> dict[str, Any]:
    """A webhook body for ``event_type``; ``data_file`` holds a captured event or user object."""
    if event_type not in EVENT_TYPES:
        raise UsageError(f"unknown event type {event_type!r}: use one of {', '.join(EVENT_TYPES)}")
    if data_file is not None:
        try:
            data = json.loads(data_file.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"--data {data_file}: not a readable JSON file ({exc})") from None
        if not isinstance(data, dict):
            raise UsageError(f"--data {data_file}: expected a JSON object")
        if isinstance(data.get("data"), dict):  # a captured event: keep it whole
            return {**data, "type": event_type}
        return event(event_type, data)
    if event_type == "user.deleted":
        if not user_id:
            raise UsageError("user.deleted needs --user-id (the Clerk id to delete)")
        return event(event_type, deleted_user(user_id))
    user = clerk_user(
        user_id=user_id,
        email=email or "ada@example.com",
        first_name=first_name or "Ada",
        last_name=last_name or "Lovelace",
        username=username,
    )
    return event(event_type, user)


def resolve_target(settings: Settings, url: str | None, secret: str | None) -> tuple[str, str]:
    """(url, secret): flags first, then a running ``serve --dev``, then the configured ones."""
    dev = read_dev_secret(settings.state_dir)
    if url is None:
        url = dev["url"] if dev else (settings.webhook_url or LOCAL_URL)
    if secret is None:
        if dev and dev["url"] == url:
            secret = dev["secret"]
        elif settings.webhook_secret:
            secret = settings.webhook_secret
        elif dev:
            secret = dev["secret"]
    if not secret:
        from clerksync.errors import ConfigError

        raise ConfigError(
            "no signing secret: set WEBHOOK_SECRET, pass --secret, or run `clerksync serve --dev`"
        )
    return url, secret


@dataclass(frozen=True)
class SendResult:
    url: str
    status: int | None  # None: no answer
    latency_ms: float
    response: str
    diagnosis: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "status": self.status,
            "latencyMs": round(self.latency_ms, 1),
            "response": self.response,
            "diagnosis": self.diagnosis,
        }


def diagnose(status: int | None) -> str | None:
    if status is None:
        return "connection refused or timed out: is `clerksync serve` running at that URL?"
    if 200 <= status < 300:
        return None
    if status == 400:
        return (
            "the receiver rejected the signature or payload: the secret differs from the "
            "receiver's WEBHOOK_SECRET, or the body is parsed and re-serialised before verification"
        )
    if status in (401, 403):
        return "the route is behind auth middleware: make /api/webhooks/clerk a public route"
    if status == 404:
        return f"wrong path: the receiver must answer POST {WEBHOOK_PATH}"
    if status == 413:
        return "the body is over the receiver's size limit"
    if status >= 500:
        return "the receiver failed (5xx): its database may be down; Svix would retry this"
    return f"unexpected answer {status}"


def post_event(url: str, secret: str, body: bytes, *, timeout: float = 15.0) -> SendResult:
    import httpx

    from clerksync.webhooks import sign

    headers = sign(secret, body)  # before the clock starts: the latency is the endpoint's
    with httpx.Client(timeout=timeout) as client:
        started = time.perf_counter()
        try:
            response = client.post(url, content=body, headers=headers)
        except httpx.HTTPError:
            elapsed = (time.perf_counter() - started) * 1000
            return SendResult(url, None, elapsed, "", diagnose(None))
        latency = (time.perf_counter() - started) * 1000
    status = response.status_code
    return SendResult(url, status, latency, response.text[:500], diagnose(status))


def curl_command(url: str, secret: str, body: bytes) -> str:
    """A ready-to-run curl with valid svix headers (they expire after 5 minutes)."""
    from clerksync.webhooks import sign

    parts = ["curl", "-sS", "-X", "POST", url]
    for key, value in sign(secret, body).items():
        parts += ["-H", f"{key}: {value}"]
    parts += ["--data-raw", body.decode()]
    return " ".join(shlex.quote(p) for p in parts)
