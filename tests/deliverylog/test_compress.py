"""A stored payload is zlib data every reader decompresses to the exact bytes, whatever its
size (the window is fitted to the body)."""

from __future__ import annotations

import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from clerksync.deliverylog.records import stored_body
from clerksync.deliverylog.writer import compress, record
from clerksync.store.mongo import utcnow


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=70_000) | st.text(max_size=5000).map(str.encode))
def test_payloads_come_back_exact(body: bytes) -> None:
    assert zlib.decompress(compress(body)) == body


def test_a_record_s_payload_reads_back() -> None:
    body = b'{"type":"user.created","data":{"id":"user_1"}}' * 40
    entry = record(
        svix_id="msg_1",
        event_type="user.created",
        user_id="user_1",
        outcome="applied",
        received_at=utcnow(),
        duration_ms=1.0,
        body=body,
    )
    assert stored_body(entry) == body and len(entry["payload"]) < len(body) / 4
