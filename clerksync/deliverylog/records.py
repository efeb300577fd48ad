"""The log's records as stored: one bucket document per flush, read newest first."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from clerksync.store.database import Store
from clerksync.store.mongo import translated


@translated
def append_records(store: Store, records: list[dict[str, Any]]) -> None:
    """Write records as one bucket; it expires with its newest record."""
    if records:
        store.deliveries.insert_one(
            {
                "firstAt": min(r["receivedAt"] for r in records),
                "expiresAt": max(r["expiresAt"] for r in records),
                "records": records,
            }
        )


@translated
def iter_records(
    store: Store,
    *,
    event_type: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    svix_id: str | None = None,
    object_id: str | None = None,
    payload: bool = False,
    oldest_first: bool = False,
) -> Iterator[Mapping[str, Any]]:
    """Records matching every filter given (``since`` <= received < ``until``), newest first
    (or ``oldest_first``), streamed bucket by bucket."""
    query: dict[str, Any] = {}
    wanted = (
        ("type", event_type),
        ("outcome", outcome),
        ("svixId", svix_id),
        ("objectId", object_id),
    )
    for field, value in wanted:
        if value is not None:
            query[f"records.{field}"] = value
    if since is not None:
        query["expiresAt"] = {"$gte": since}  # a bucket expires after its newest record
    if until is not None:
        query["firstAt"] = {"$lt": until}  # and starts with its oldest
    projection = None if payload else {"records.payload": 0}
    # _id order is write order, and _id is indexed anyway: the log keeps no other
    # index but its TTL, to stay cheap to write.
    direction = 1 if oldest_first else -1
    # with payloads, a bucket at a time: a bucket holds up to 8 MB of them
    batch = 1 if payload else 20
    buckets = store.deliveries.find(query, projection).sort("_id", direction).batch_size(batch)
    for bucket in buckets:
        records = bucket.get("records") or []
        for entry in records if oldest_first else reversed(records):
            if (
                (event_type is None or entry.get("type") == event_type)
                and (outcome is None or entry.get("outcome") == outcome)
                and (svix_id is None or entry.get("svixId") == svix_id)
                and (object_id is None or entry.get("objectId") == object_id)
                and (since is None or entry["receivedAt"] >= since)
                and (until is None or entry["receivedAt"] < until)
            ):
                yield entry


@translated
def log_version(store: Store) -> str:
    """A word that changes whenever a bucket is written (or expires): the bucket count and
    the newest ``_id``. A live view asks for rows only when it changed. The count is there
    because ``_id`` order is only near write order across processes (a replay's bucket
    can sort before the receiver's of the same second)."""
    newest = store.deliveries.find({}, {"_id": 1}).sort("_id", -1).limit(1)
    last = next((str(bucket["_id"]) for bucket in newest), "")
    return f"{store.deliveries.estimated_document_count()}-{last}"


def stored_body(entry: Mapping[str, Any]) -> bytes | None:
    """The delivery's body as received, or None (rejected, or expired)."""
    payload = entry.get("payload")
    return zlib.decompress(payload) if payload else None
