"""Every reader of the delivery log handles every record the receiver can write.

A property test: any record ``deliverylog.writer.record`` can make (any ids, types, errors,
notes, any body bytes or none, webhook or replay, a rejection summary) is listed, shown,
shown with ``--payload`` and ``--json``, tailed and counted, and replayed or refused with
one line: never a traceback, never "a bug in clerksync", ``--json`` always JSON. Then the
two findings of issue 19 it stands for, through the real receiver and CLI.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clerksync.deliverylog.records import append_records
from clerksync.deliverylog.writer import OUTCOMES, record
from clerksync.devtools.payloads import clerk_user, event
from clerksync.store.database import Store
from clerksync.store.mongo import utcnow
from tests.conftest import WEBHOOK_SECRET
from tests.support.output import HOSTILE, assert_clean, one_line, strict_json
from tests.support.receiver import RunningReceiver, post

#: text as a sender or an end user could make it (BSON holds no lone surrogate: the
#: database would refuse such a record, so the writer cannot produce one)
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(HOSTILE) + ["\n", "\x00", "{", '"']), st.characters(codec="utf-8")
    ),
    max_size=40,
)
BODIES = st.one_of(
    st.none(),
    st.just(b""),
    st.binary(max_size=200),
    TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            b'{"type": "user.created", "data": {"id": "user_p", "x": NaN, "y": 1e400}}',
            b'{"type": "session.created", "data": {"n": ' + b"9" * 5000 + b"}}",
            b"[" * 600 + b"]" * 600,
            json.dumps(event("user.created", clerk_user(user_id="user_prop"))).encode(),
            b'{"type": 5}',
        ]
    ),
)
_serial = itertools.count()


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    entry = record(
        svix_id=f"{draw(TEXT)}{next(_serial)}",
        event_type=draw(st.none() | TEXT),
        user_id=draw(st.none() | TEXT),
        object_id=draw(st.none() | TEXT),
        outcome=draw(st.sampled_from(OUTCOMES)),
        received_at=utcnow(),
        duration_ms=draw(st.floats(min_value=0, max_value=1e6)),
        error=draw(st.none() | TEXT),
        body=draw(BODIES),
        source=draw(st.sampled_from(["webhook", "replay"])),
        notes=tuple(draw(st.lists(TEXT, max_size=2))),
    )
    if draw(st.booleans()):  # the rejection sampler's summary of many
        entry["count"] = draw(st.integers(min_value=1, max_value=10**6))
    return entry


def run_clean(cli: Any, *args: str) -> Any:
    result = cli(*args)
    assert result.exit_code in (0, 1), (args, result.exit_code, result.stderr)
    assert "a bug in clerksync" not in result.stderr, (args, result.stderr)
    assert_clean(result.stdout)
    assert_clean(result.stderr)
    if result.exit_code == 1:
        assert one_line(result.stderr) or result.stdout, (args, result.stderr)
    return result


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(entries=st.lists(records(), min_size=1, max_size=5))
def test_every_reader_handles_every_record_the_writer_can_make(
    cli: Any, store: Store, entries: list[dict[str, Any]]
) -> None:
    append_records(store, entries)
    listed = strict_json(run_clean(cli, "events", "list", "--limit", "1000", "--json").stdout)
    assert {e["svixId"] for e in entries} <= {row["id"] for row in listed}
    run_clean(cli, "events", "list")
    for line in run_clean(cli, "events", "tail", "--json").stdout.splitlines():
        strict_json(line)
    run_clean(cli, "events", "tail")
    strict_json(run_clean(cli, "events", "stats", "--json").stdout)
    run_clean(cli, "events", "stats")
    for entry in entries:
        svix_id = entry["svixId"]  # after "--": an id may start with a dash
        shown = run_clean(cli, "events", "show", "--payload", "--", svix_id)
        assert shown.exit_code == 0, shown.stderr
        view = strict_json(
            run_clean(cli, "events", "show", "--payload", "--json", "--", svix_id).stdout
        )
        assert view["id"] == svix_id
        if entry.get("payload") is not None and entry["source"] == "webhook":
            assert view["payload"] is not None or "payloadText" in view
        replayed = run_clean(cli, "events", "replay", "--json", "--", svix_id)
        if replayed.exit_code == 0:
            [result] = strict_json(replayed.stdout)
            assert result["outcome"] in OUTCOMES
    run_clean(cli, "events", "replay", "--failed", "--json")


def test_a_signed_empty_body_is_shown_and_replayed_as_rejected(
    cli: Any, receiver: RunningReceiver, store: Store
) -> None:
    """Finding 3: ``events show ID --payload`` exited 1 "a bug in clerksync" on it, and
    ``events replay ID`` failed an AssertionError."""
    response = post(receiver.url, WEBHOOK_SECRET, None, raw=b"", msg_id="msg_empty")
    assert response.status_code == 400, response.text
    receiver.receiver.log.flush_now()
    shown = run_clean(cli, "events", "show", "msg_empty", "--payload")
    assert shown.exit_code == 0 and "payload (not JSON, 0 bytes)" in shown.stdout
    view = strict_json(run_clean(cli, "events", "show", "msg_empty", "--payload", "--json").stdout)
    assert (view["payload"], view["payloadText"]) == (None, "")
    replayed = run_clean(cli, "events", "replay", "msg_empty", "--json")
    assert replayed.exit_code == 0, replayed.stderr
    [result] = json.loads(replayed.stdout)
    assert (result["outcome"], result["error"]) == ("rejected", "payload: body is not JSON")


def test_a_rejected_delivery_stays_rejected_and_replay_failed_exits_0_for_it(
    cli: Any, receiver: RunningReceiver, store: Store
) -> None:
    """Finding 4: replaying a rejected delivery made it ``failed (replay)``, and from then on
    ``events replay --failed`` retried it on every run and exited 1."""
    body = json.dumps(event("user.created", {"id": "not a user id"})).encode()
    assert post(receiver.url, WEBHOOK_SECRET, None, raw=body, msg_id="msg_bad").status_code == 400
    receiver.receiver.log.flush_now()
    replayed = run_clean(cli, "events", "replay", "msg_bad", "--json")
    assert replayed.exit_code == 0
    assert json.loads(replayed.stdout)[0]["outcome"] == "rejected"
    assert run_clean(cli, "events", "replay", "--failed", "--json").stdout.strip() == "[]"
    # a log an earlier version wrote: its replay of the rejected delivery said `failed`
    append_records(
        store,
        [
            record(
                svix_id="msg_bad",
                event_type="user.created",
                user_id=None,
                outcome="failed",
                received_at=utcnow(),
                duration_ms=1.0,
                source="replay",
                error="field 'id' must be a Clerk user id such as user_2abc…",
            )
        ],
    )
    first = run_clean(cli, "events", "replay", "--failed")
    assert first.exit_code == 0, first.stderr
    assert "1 rejected (a replay cannot fix them)" in first.stderr
    again = run_clean(cli, "events", "replay", "--failed", "--json")
    assert again.exit_code == 0 and again.stdout.strip() == "[]"  # not taken up again
    rows = json.loads(run_clean(cli, "events", "list", "--json").stdout)
    assert [r["outcome"] for r in rows if r["id"] == "msg_bad"] == [
        "rejected",
        "failed",
        "rejected",
        "rejected",
    ]
