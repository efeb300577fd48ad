"""``clerksync send``: build a realistic Clerk event, sign it with the svix library, post it.

A delivery signed ``v1,test_signature`` proves nothing; this one verifies
exactly as Clerk's would, so a non-2xx answer says something about the
receiver. ``diagnose`` turns that answer into the likely cause. What ``send``
remembers between runs (the users it made, the running ``serve``, the dev
secret) is ``clerksync.devtools.localstate``'s.
"""

from __future__ import annotations

import copy
import json
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from clerksync.devtools.localstate import SendState, read_dev_secret, running_server
from clerksync.devtools.payloads import clerk_user, deleted_user, event
from clerksync.errors import UsageError
from clerksync.settings import WEBHOOK_PATH, Settings

USER_EVENTS = ("user.created", "user.updated", "user.deleted")


LOCAL_URL = "http://127.0.0.1:8000" + WEBHOOK_PATH


MAX_DATA = 1024 * 1024  # the receiver refuses more (413)


@cache
def examples() -> dict[str, dict[str, Any]]:
    """Clerk's documented example of each webhook event type (clerk/openapi-specs, MIT)."""
    path = Path(__file__).with_name("clerk_webhook_examples.json")
    events: dict[str, dict[str, Any]] = json.loads(path.read_text())["events"]
    return events


def session(event_type: str, user_id: str | None) -> dict[str, Any]:
    """A Clerk session object (session.* events are not in the examples file)."""
    import secrets

    now = int(time.time() * 1000)
    status = {"session.ended": "ended", "session.removed": "removed", "session.revoked": "revoked"}
    return {
        "id": "sess_" + secrets.token_hex(13),
        "object": "session",
        "client_id": "client_" + secrets.token_hex(13),
        "user_id": user_id or "user_" + secrets.token_hex(13),
        "status": status.get(event_type, "active"),
        "last_active_at": now,
        "last_active_organization_id": None,
        "actor": None,
        "expire_at": now + 7 * 86_400_000,
        "abandon_at": now + 30 * 86_400_000,
        "created_at": now,
        "updated_at": now,
    }


SESSION_EVENTS = (
    "session.created",
    "session.ended",
    "session.pending",
    "session.removed",
    "session.revoked",
)


def event_types() -> tuple[str, ...]:
    """Every type ``send`` can build: the user events, sessions, and Clerk's documented examples."""
    return tuple(sorted({*USER_EVENTS, *SESSION_EVENTS, *examples()}))


def known_types(wrong: str) -> str:
    """What ``send`` can send instead of ``wrong``: the closest names, then the types of the
    same object (``subscriptionItem.…``), or else every object's name."""
    import difflib

    types = event_types()
    close = difflib.get_close_matches(wrong, types, n=3, cutoff=0.7)
    prefix = wrong.split(".", 1)[0]
    same = [t.split(".", 1)[1] for t in types if t.split(".", 1)[0] == prefix]
    if same:
        listed = f"{prefix} events: {', '.join(same)}"
    else:
        objects = sorted({t.split(".", 1)[0] for t in types})
        listed = f"send takes object.action, the objects being {', '.join(objects)}"
    return f"did you mean {' or '.join(close)}? ({listed})" if close else listed


def read_data_file(path: Path) -> dict[str, Any]:
    """A captured event or user object; at most 1 MiB, read without trusting its size."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_DATA + 1)
    except OSError as exc:
        raise UsageError(f"--data {path}: cannot read it ({exc.strerror or exc})") from None
    if len(raw) > MAX_DATA:
        raise UsageError(f"--data {path}: over 1 MiB (the receiver would answer 413)")
    try:
        data = json.loads(raw)
    except ValueError:
        raise UsageError(f"--data {path}: not a JSON file") from None
    if not isinstance(data, dict):
        raise UsageError(f"--data {path}: expected a JSON object")
    return data


def build_event(
    event_type: str,
    *,
    user_id: str | None = None,
    email: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    username: str | None = None,
    data_file: Path | None = None,
    state: SendState | None = None,
) -> dict[str, Any]:
    """A webhook body for ``event_type``. No field is invented: only what is given, or kept.

    ``user.updated`` and ``user.deleted`` without ``user_id`` act on the last
    user ``send`` created (``state``); ``user.updated`` starts from that user as
    last sent, so only the fields given change.
    """
    state = state or SendState()
    types = event_types()
    if event_type not in types:
        raise UsageError(f"unknown event type {event_type[:60]!r}: {known_types(event_type)}")
    if data_file is not None:
        data = read_data_file(data_file)
        if isinstance(data.get("data"), dict):  # a captured event: keep it whole
            return {**data, "type": event_type}
        return event(event_type, data)
    given = {
        "email": email,
        "first_name": first_name,
        "last_name": last_name,
        "username": username,
    }
    if event_type == "user.created":
        fields = {k: v for k, v in given.items() if v is not None}
        return event(
            event_type,
            clerk_user(
                user_id=user_id,
                email=fields.get("email"),
                first_name=fields.get("first_name"),
                last_name=fields.get("last_name"),
                username=fields.get("username"),
            ),
        )
    if event_type in ("user.updated", "user.deleted"):
        target = user_id or state.last
        if target is None:
            raise UsageError(
                f"{event_type} needs --user-id: `send` holds no user of its own here (none "
                "created yet, or the ones it created were deleted): run `clerksync send "
                "user.created` first, or name one"
            )
        if event_type == "user.deleted":
            return event(event_type, deleted_user(target))
        return event(event_type, updated_user(target, state.users.get(target), given))
    if event_type in SESSION_EVENTS:
        return event(event_type, session(event_type, user_id or state.last))
    body = example_event(event_type)
    if event_type.startswith("organizationMembership.") and user_id is not None:
        # The membership of that user (a user `send` created, say) in the example's org.
        public = body["data"].setdefault("public_user_data", {})
        public["user_id"] = user_id
        known = state.users.get(user_id) or {}
        addresses = known.get("email_addresses") or []
        first = addresses[0] if addresses and isinstance(addresses[0], dict) else {}
        # Nothing of the example's user stays: that user's or nothing (no field invented).
        public["identifier"] = first.get("email_address")
        for key in ("first_name", "last_name", "image_url", "profile_image_url"):
            if key in public:
                public[key] = known.get(key)
        user_id = None
    # The overrides follow the example's shape, not its type, so an event of a kind added
    # later gets them too: ``--user-id`` names the payer of an example that has one (billing),
    # ``--email`` sets the ``email_address`` of one that has it (an invitation, an entry).
    example = body.get("data")
    payer = example.get("payer") if isinstance(example, dict) else None
    if user_id is not None and isinstance(payer, dict):
        # The example's billing object, paid for by that user (one `send` created, say).
        known = state.users.get(user_id) or {}
        addresses = known.get("email_addresses") or [{}]
        mine = {**known, "email": (addresses[0] or {}).get("email_address")}
        payer.update(user_id=user_id, organization_id="", organization_name="")
        for key in ("first_name", "last_name", "email", "image_url"):
            if key in payer:
                payer[key] = mine.get(key)  # that user's, or nothing (none invented)
        user_id = None
    if (
        isinstance(example, dict)
        and isinstance(example.get("email_address"), str)
        and given["email"] is not None
    ):
        example["email_address"] = given["email"]  # the invitation's or entry's address
        given = {**given, "email": None}
    unused = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is not None]
    if user_id is not None:
        unused.insert(0, "--user-id")
    if unused:
        raise UsageError(
            f"{', '.join(unused)} {'does' if len(unused) == 1 else 'do'} not apply to "
            f"{event_type}: it is sent as Clerk's documented example (--user-id names a "
            "membership's user or a billing payer, --email an invitation's or a waitlist "
            "entry's address; --data sends your own)"
        )
    return body


def updated_user(
    user_id: str, before: dict[str, Any] | None, given: Mapping[str, str | None]
) -> dict[str, Any]:
    """The user as last sent with the given fields changed and ``updated_at`` moved on."""
    user = (
        copy.deepcopy(before)
        if before
        else clerk_user(user_id=user_id, email=None, first_name=None, last_name=None)
    )
    now = int(time.time() * 1000)
    previous = user.get("updated_at")
    user["updated_at"] = max(now, previous + 1) if isinstance(previous, int) else now
    for key in ("first_name", "last_name", "username"):
        if given.get(key) is not None:
            user[key] = given[key]
    if given.get("email") is not None:
        fresh = clerk_user(user_id=user_id, email=given["email"])
        user["email_addresses"] = fresh["email_addresses"]
        user["primary_email_address_id"] = fresh["primary_email_address_id"]
    return user


def example_event(event_type: str) -> dict[str, Any]:
    """Clerk's documented example of ``event_type``, stamped now (so ordering sees it as new)."""
    body = copy.deepcopy(examples()[event_type])
    body.pop("instance_id", None)  # the docs' instance, not the receiver's: it would bind to it
    now = int(time.time() * 1000)
    body["timestamp"] = now
    data = body.get("data")
    if isinstance(data, dict) and "updated_at" in data:
        data["updated_at"] = now
    for item in data.get("items") or [] if isinstance(data, dict) else []:
        if isinstance(item, dict) and "updated_at" in item:
            item["updated_at"] = now  # the items a subscription carries
    return body


def resolve_target(settings: Settings, url: str | None, secret: str | None) -> tuple[str, str]:
    """(url, secret): flags first, then the running ``serve``, then the configured ones."""
    running = running_server(settings.state_dir)
    if url is None:
        url = running["url"] if running else (settings.webhook_url or LOCAL_URL)
    if secret is None:
        if running and running["dev"] and running["url"] == url and running["secret"]:
            secret = running["secret"]
        elif settings.webhook_secret:
            secret = settings.webhook_secret
        else:
            secret = read_dev_secret(settings.state_dir)
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

    @property
    def answer(self) -> Any:
        """The receiver's answer: its JSON when it is JSON, else the text."""
        try:
            return json.loads(self.response)
        except ValueError:
            return self.response

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "status": self.status,
            "latencyMs": round(self.latency_ms, 1),
            "response": self.answer,
            "diagnosis": self.diagnosis,
        }


def diagnose(status: int | None, error: str | None = None) -> str | None:
    """The likely cause of an answer; ``error`` is the receiver's own word, when it gave one."""
    if status is None:
        return "connection refused or timed out: is `clerksync serve` running at that URL?"
    if 200 <= status < 300:
        return None
    if status == 400 and error and error.startswith("payload:"):
        # the signature was good: the secret and the raw body are fine, the event is not
        return (
            f"the signature verified, but the receiver refused the event ({error[:200]}): "
            "fix the event body (--data)"
        )
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
    if status >= 500 and error and error.startswith("index "):
        return (
            "an index of the app's refused the write (the error names it): `clerksync doctor` "
            "says how to fix it; Svix would retry this, and `clerksync events replay --failed` "
            "replays it once fixed"
        )
    if status >= 500 and error and error.startswith("Clerk-id uniqueness"):
        return "the receiver has no unique Clerk-id index yet: `clerksync doctor` says why"
    if status >= 500 and error and error.startswith("database:"):
        return "the receiver could not reach its database; Svix would retry this"
    if status >= 500:
        return "the receiver failed (5xx); Svix would retry this"
    return f"unexpected answer {status}"


def post_event(url: str, secret: str, body: bytes, *, timeout: float = 15.0) -> SendResult:
    import httpx

    from clerksync.clerk.tls import tls_context
    from clerksync.clerk.webhooks import sign

    headers = sign(secret, body)  # before the clock starts: the latency is the endpoint's
    started = time.perf_counter()
    try:
        with httpx.Client(timeout=timeout, verify=tls_context()) as client:
            response = client.post(url, content=body, headers=headers)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError):
        elapsed = (time.perf_counter() - started) * 1000
        return SendResult(url, None, elapsed, "", diagnose(None))
    latency = (time.perf_counter() - started) * 1000
    status = response.status_code
    try:
        said = response.json()
    except ValueError:
        said = None
    error = said.get("error") if isinstance(said, dict) else None
    diagnosis = diagnose(status, error if isinstance(error, str) else None)
    return SendResult(url, status, latency, response.text[:65536], diagnosis)


def curl_command(url: str, secret: str, body: bytes) -> str:
    """A ready-to-run curl with valid svix headers (they expire after 5 minutes)."""
    from clerksync.clerk.webhooks import sign

    parts = ["curl", "-sS", "-X", "POST", url]
    for key, value in sign(secret, body).items():
        parts += ["-H", f"{key}: {value}"]
    parts += ["--data-raw", body.decode()]
    return " ".join(shlex.quote(p) for p in parts)
