"""Fuzz (hypothesis): signed ``user.created``, ``organization.created`` and membership bodies
with hostile strings, numbers and nesting in any field, through the real receiver and CLI.

Every answer is a 2xx or a documented 4xx (400 ``rejected`` with a ``payload:`` error); what
only touches fields clerksync does not store, or puts text in a text field, is a 2xx; and
everything the receiver stored (documents and log records) is read back by every command
that prints it without a crash, a character a terminal would act on, or invalid JSON.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clerksync.clerk.jsonbody import MAX_DEPTH, deeper_than
from clerksync.clerk.tls import tls_context
from clerksync.clerk.webhooks import sign
from clerksync.devtools.payloads import clerk_user, event
from clerksync.store.database import Store
from tests.conftest import WEBHOOK_SECRET
from tests.support.fakeclerk import clerk_membership, clerk_organization
from tests.support.output import HOSTILE, assert_clean, one_line, strict_json
from tests.support.receiver import RunningReceiver


class Raw:
    """A JSON token written as it is: numbers Python's encoder cannot write (5,000 digits,
    ``NaN``, ``1e400``)."""

    def __init__(self, token: str) -> None:
        self.token = token


def encode(value: Any) -> bytes:
    """``value`` as a JSON body, ``Raw`` tokens in place; lone surrogates as ``\\udXXX``."""
    tokens: list[str] = []

    def mark(item: Any) -> Any:
        if isinstance(item, Raw):
            tokens.append(item.token)
            return f"\x00raw{len(tokens) - 1}\x00"
        if isinstance(item, dict):
            return {k: mark(v) for k, v in item.items()}
        if isinstance(item, list):
            return [mark(v) for v in item]
        return item

    text = json.dumps(mark(value))
    text = re.sub(r'"\\u0000raw(\d+)\\u0000"', lambda m: tokens[int(m[1])], text)
    return text.encode()


#: characters a terminal acts on or shows as something else, and ones BSON cannot hold
ODD = list("\x00\x07\x08\x1b\x7f\x85\x9b\u200e\u202a\u202e\u2066\u2069\u2028\u2029\ufeff")
SURROGATES = ["\ud800", "\udfff"]


def texts(surrogates: bool) -> st.SearchStrategy[str]:
    odd = ODD + SURROGATES if surrogates else ODD
    chars = st.one_of(st.sampled_from(odd), st.characters(codec="utf-8"))
    return st.one_of(
        st.text(chars, min_size=1, max_size=30),
        st.just(HOSTILE),
        # past the 2,048-character limit of a stored text field
        st.builds(
            lambda s, n: s * n, st.text(chars, min_size=1, max_size=3), st.integers(700, 1100)
        ),
    )


NUMBERS = st.one_of(
    st.sampled_from(
        ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "9223372036854775808"]
        + ["-9223372036854775809", "1" * 5000, "-" + "9" * 4400, "0.1e99999"]
    ),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
).map(Raw)

LEAVES = st.one_of(st.none(), st.booleans(), NUMBERS, texts(surrogates=True))
NESTED = st.one_of(
    st.recursive(
        LEAVES,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(texts(False), inner, max_size=3)
        ),
        max_leaves=8,
    ),
    # deep: 600 levels is past the 512 any reader can parse again (a documented 400)
    st.integers(1, 600).map(lambda depth: json.loads("[" * depth + "]" * depth)),
)
ANY_VALUE = st.one_of(LEAVES, NESTED)

#: what the parsers read (anything else is carried, never a reason to refuse)
READ = {
    "user": {
        "id", "email_addresses", "primary_email_address_id", "phone_numbers",
        "primary_phone_number_id", "first_name", "last_name", "username", "image_url",
        "profile_image_url", "created_at", "updated_at", "public_metadata",
    },
    "organization": {"id", "name", "slug", "image_url", "created_at", "updated_at"},
    "membership": {
        "id", "role", "organization", "public_user_data", "created_at", "updated_at",
        "organization.id", "public_user_data.user_id",
    },
}  # fmt: skip
#: stored text fields: text there (no lone surrogate) is stored, cut when over the limit
TEXT = {
    "user": {"first_name", "last_name", "username"},
    "organization": {"name", "slug"},
    "membership": set(),
}

counter = itertools.count()


def template(kind: str, n: int) -> tuple[str, dict[str, Any]]:
    org = clerk_organization(org_id=f"org_fz{n}")
    if kind == "user":
        return "user.created", clerk_user(user_id=f"user_fz{n}", email=f"fz{n}@example.com")
    if kind == "organization":
        return "organization.created", org
    member = clerk_membership(org=org, user_id=f"user_fz{n}", membership_id=f"orgmem_fz{n}")
    return "organizationMembership.created", member


def paths(kind: str) -> list[str]:
    """Every field of the template, nested ones as ``a.b`` (and the envelope's as ``^a``)."""
    _, data = template(kind, 0)
    found = [k for k in data]
    for key, value in data.items():
        if isinstance(value, dict):
            found += [f"{key}.{inner}" for inner in value]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            found += [f"{key}.0.{inner}" for inner in value[0]]
    envelope = ["^event_attributes", "^event_attributes.http_request.user_agent"]
    return found + envelope + ["^instance_id", "^timestamp", "^object"]


def put(body: dict[str, Any], path: str, value: Any) -> None:
    where: Any = body if path.startswith("^") else body["data"]
    keys = path.lstrip("^").split(".")
    for key in keys[:-1]:
        if isinstance(where, list):
            # a field path into a list a mutation above put in its place: nothing to put
            where = where[int(key)] if key.isdigit() and int(key) < len(where) else None
        else:
            where = where.get(key)
        if not isinstance(where, (dict, list)):
            return  # a mutation above replaced it already (an empty list: no item 0)
    if isinstance(where, list):
        if keys[-1].isdigit() and int(keys[-1]) < len(where):
            where[int(keys[-1])] = value
    else:
        where[keys[-1]] = value


def mutations(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(paths(kind)), ANY_VALUE, min_size=1, max_size=5)


def harmless(kind: str, changed: dict[str, Any]) -> bool:
    """Must this body be stored: it changes only fields clerksync does not read, or puts
    text (no lone surrogate, non-empty) in a text field it stores?"""
    for path, value in changed.items():
        top = path.split(".")[0]
        if path.startswith("^"):
            continue  # the envelope: only type and data are read
        if kind == "membership" and path in ("organization.id", "public_user_data.user_id"):
            return False
        if kind == "membership" and "." in path and path not in READ[kind]:
            continue
        if top not in READ[kind]:
            continue
        text = isinstance(value, str) and value and not any(c in value for c in SURROGATES)
        if path in TEXT[kind] and text:
            continue
        return False
    return True


def read_back(cli: Any, kind: str, n: int, svix_id: str, stored: bool) -> None:
    commands: list[tuple[str, ...]] = [
        ("events", "show", svix_id),
        ("events", "show", svix_id, "--payload"),
    ]
    if stored:
        commands += {
            "user": [("users", "show", f"user_fz{n}")],
            "organization": [("orgs", "show", f"org_fz{n}")],
            "membership": [("users", "show", f"user_fz{n}"), ("orgs", "show", f"org_fz{n}")],
        }[kind]
    for command in commands:
        for json_flag in ((), ("--json",)):
            result = cli(*command, *json_flag)
            assert result.exit_code in (0, 1), (command, result.stderr)
            assert "a bug in clerksync" not in result.stderr, (command, result.stderr)
            assert_clean(result.stdout)
            assert_clean(result.stderr)
            if result.exit_code == 1:
                assert one_line(result.stderr), (command, result.stderr)
            elif json_flag:
                strict_json(result.stdout)


def test_hostile_bodies_are_answered_as_documented_and_read_back_by_every_command(
    cli: Any, receiver: RunningReceiver, store: Store
) -> None:
    answers: dict[int, int] = {}

    @settings(
        max_examples=int(os.environ.get("CLERKSYNC_FUZZ_EXAMPLES", "30")),  # more: a longer hunt
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(
        kind=st.sampled_from(["user", "organization", "membership"]),
        data=st.data(),
    )
    def deliver(kind: str, data: st.DataObject) -> None:
        n = next(counter)
        event_type, item = template(kind, n)
        if kind == "membership":  # its organization and user first, so that both show it
            org, user = item["organization"], clerk_user(user_id=f"user_fz{n}")
            for parent in (event("organization.created", org), event("user.created", user)):
                plain = encode(parent)
                headers = sign(WEBHOOK_SECRET, plain)
                answer = httpx.post(
                    receiver.url, content=plain, headers=headers, verify=tls_context()
                )
                assert answer.status_code == 200
        body = event(event_type, item)
        changed = data.draw(mutations(kind), label="changed")
        for path, value in changed.items():
            put(body, path, value)
        raw = encode(body)
        svix_id = f"msg_fz{n}"
        answer = httpx.post(
            receiver.url,
            content=raw,
            headers=sign(WEBHOOK_SECRET, raw, msg_id=svix_id),
            verify=tls_context(),
        )
        answers[answer.status_code] = answers.get(answer.status_code, 0) + 1
        assert answer.status_code in (200, 400), (answer.status_code, answer.text)
        said = strict_json(answer.text)
        if answer.status_code == 400:
            assert said["outcome"] == "rejected" and said["error"].startswith("payload: "), said
            # nesting past the bound is the one refusal an unread field can cause
            assert deeper_than(body, MAX_DEPTH) or not harmless(kind, changed), (said, changed)
        else:
            assert said["outcome"] in ("applied", "ignored", "stale", "duplicate"), said
        receiver.receiver.log.flush_now()
        read_back(cli, kind, n, svix_id, stored=answer.status_code == 200)

    deliver()
    assert answers.get(200), answers  # the fuzz stored something (and refused what it should)
    for command in [
        ("users", "list"),
        ("users", "list", "--json"),
        ("orgs", "list"),
        ("orgs", "list", "--json"),
        ("events", "list", "--limit", "1000"),
        ("events", "list", "--limit", "1000", "--json"),
        ("events", "stats"),
        ("events", "stats", "--json"),
        ("events", "tail", "--lines", "1000"),
        ("events", "replay", "--failed"),
    ]:
        result = cli(*command)
        assert result.exit_code == 0, (command, result.stderr)
        assert_clean(result.stdout)
        assert_clean(result.stderr)
        if "--json" in command:
            strict_json(result.stdout)
    for line in cli("events", "tail", "--lines", "1000", "--json").stdout.splitlines():
        strict_json(line)
