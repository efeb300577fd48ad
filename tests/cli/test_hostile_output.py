"""Every command that prints text clerksync did not write, with a hostile value in every field
it prints: nothing reaches the terminal as a command or shows as something else.

The value (``HOSTILE``) holds terminal escapes, a bidi override and isolate, line and
paragraph separators, NEL, CR and Rich markup. It goes in as each writer could put it: an
end user's names through the real receiver (svix-signed), an app's own documents and index
names written to the database directly, and log records as ``deliverylog.writer.record``
makes them. Issue 19, finding 2: ``orgs show`` printed an organization's name raw, and
``users list``/``users show`` let bidi overrides and line separators through.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from bson import ObjectId

from clerksync.deliverylog.records import append_records
from clerksync.deliverylog.writer import record
from clerksync.devtools.payloads import clerk_user, event
from clerksync.receiver.logs import PlainLines
from clerksync.store.database import Store
from clerksync.store.mongo import utcnow
from tests.conftest import WEBHOOK_SECRET
from tests.support.fakeclerk import clerk_membership, clerk_organization
from tests.support.output import HOSTILE, assert_clean, one_line, strict_json
from tests.support.receiver import RunningReceiver, post

SHOWN = "\\x1b]0;PWNED\\x07"  # how the escape sequence prints: visibly, as text


def seed(receiver: RunningReceiver, store: Store) -> dict[str, str]:
    """Hostile values in every field each command prints; the ids to name them by."""
    user = clerk_user(
        user_id="user_hostile",
        email=f"{HOSTILE}@x.com",
        first_name=HOSTILE,
        last_name=HOSTILE,
        username=HOSTILE,
    )
    user["image_url"] = HOSTILE
    assert post(receiver.url, WEBHOOK_SECRET, event("user.created", user)).status_code == 200
    org = clerk_organization(org_id="org_hostile", name=HOSTILE, slug=HOSTILE, image_url=HOSTILE)
    assert post(receiver.url, WEBHOOK_SECRET, event("organization.created", org)).status_code == 200
    member = clerk_membership(org=org, user_id="user_hostile", role=HOSTILE)
    answer = post(receiver.url, WEBHOOK_SECRET, event("organizationMembership.created", member))
    assert answer.status_code == 200, answer.text
    # what an app may write in its own documents, and name its own indexes
    app_user = ObjectId()
    store.users.insert_one(
        {
            "_id": app_user,
            "clerkId": HOSTILE,
            "email": HOSTILE.upper() + "@X.COM",
            "firstName": HOSTILE,
            "lastName": HOSTILE,
            "username": HOSTILE + "2",
            "profilePicture": HOSTILE,
            "isAdmin": False,
            "createdAt": HOSTILE,
            "updatedAt": HOSTILE,
        }
    )
    store.users.create_index("username", unique=True, name=f"username_{HOSTILE}")
    app_org = ObjectId()
    store.db["organizations"].insert_one(
        {"_id": app_org, "clerkId": HOSTILE, "name": HOSTILE, "slug": HOSTILE + "x"}
    )
    # a log record with a hostile value in every field the writer takes
    append_records(
        store,
        [
            record(
                svix_id=HOSTILE,
                event_type=HOSTILE,
                user_id=HOSTILE,
                object_id=HOSTILE,
                outcome="failed",
                received_at=utcnow(),
                duration_ms=1.0,
                error=HOSTILE,
                body=HOSTILE.encode("utf-8", "surrogatepass"),
                notes=(HOSTILE,),
            )
        ],
    )
    receiver.receiver.log.flush_now()
    return {"app_user": str(app_user), "app_org": str(app_org)}


def test_every_command_that_prints_stored_text_shows_it_escaped(
    cli: Any, receiver: RunningReceiver, store: Store
) -> None:
    ids = seed(receiver, store)
    commands: list[tuple[str, ...]] = [
        ("users", "list"),
        ("users", "list", "--search", "evil"),
        ("users", "show", "user_hostile"),
        ("users", "show", ids["app_user"]),
        ("orgs", "list"),
        ("orgs", "show", "org_hostile"),
        ("orgs", "show", ids["app_org"]),
        ("events", "list"),
        ("events", "show", HOSTILE),
        ("events", "show", HOSTILE, "--payload"),
        ("events", "tail"),
        ("events", "stats"),
        ("events", "replay", "--failed"),  # the failed record: its body is no event
        ("events", "replay", HOSTILE),
        ("doctor",),
        ("promote", "user_hostile"),
        ("users", "show", HOSTILE + "@nowhere"),  # an error line naming what was asked
    ]
    escaped_somewhere = 0
    for command in commands:
        result = cli(*command)
        assert result.exit_code in (0, 1), (command, result.stderr)
        assert "a bug in clerksync" not in result.stderr, (command, result.stderr)
        assert_clean(result.stdout)
        assert_clean(result.stderr)
        if result.exit_code == 1 and not result.stdout:
            assert one_line(result.stderr), (command, result.stderr)
        printed = (result.stdout + result.stderr).lower()  # emails are kept lower-cased
        escaped_somewhere += SHOWN.lower() in printed
        assert "pwned" in printed or command[0] == "doctor", command
    assert escaped_somewhere >= len(commands) - 2  # stats and doctor may abbreviate
    for command in commands[:-3]:
        if command[0] == "events" and command[1] in ("tail", "replay"):
            continue
        result = cli(*command, "--json")
        assert result.exit_code in (0, 1), (command, result.stderr)
        strict_json(result.stdout)
    for line in cli("events", "tail", "--json").stdout.splitlines():
        strict_json(line)


@pytest.mark.parametrize("level", [logging.INFO, logging.ERROR])
def test_serve_plain_log_lines_show_data_escaped_one_line_each(level: int) -> None:
    line = PlainLines().format(
        logging.LogRecord("clerksync.server", level, __file__, 1, "delivery %s", (HOSTILE,), None)
    )
    assert_clean(line) and "\n" not in line and SHOWN in line
