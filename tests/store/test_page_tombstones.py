"""A reconcile page reads the tombstones of what it stores after writing it. While nothing is
kept in the tombstones collection (a database being first filled) that read is one probe for
any document, not an ``$in`` of the page's ids; once anything is kept, the ``$in`` follows and
refuses what it must."""

from __future__ import annotations

from typing import Any

from clerksync.devtools.payloads import clerk_user
from clerksync.kinds.user import USER, parse_clerk_user
from clerksync.store.database import Store
from clerksync.store.mongo import IN_CHUNK
from clerksync.store.pages import write_page
from clerksync.store.users import writer

PAGE = IN_CHUNK + 10  # a page's worth of ids: the probe is for pages, not single deliveries


def page(prefix: str) -> list[Any]:
    return [
        parse_clerk_user(clerk_user(user_id=f"user_{prefix}{i:04d}", email=None, updated_at=5))
        for i in range(PAGE)
    ]


def tombstone_reads(listener: Any) -> list[dict[str, Any]]:
    return [
        command["filter"]
        for name, command in listener.sent
        if name == "find" and command["find"] == "clerksync_tombstones"
    ]


def test_a_page_into_a_database_without_tombstones_probes_instead_of_reading_its_ids(
    watched: tuple[Store, Any],
) -> None:
    own, listener = watched
    counts = write_page(writer(own), USER, page("a"))
    assert counts.created == PAGE
    assert tombstone_reads(listener) == [{}]  # one probe, no $in of 60 ids
    assert own.users.count_documents({}) == PAGE


def test_a_page_whose_object_was_deleted_is_refused_through_the_probe(
    store: Store, watched: tuple[Store, Any]
) -> None:
    own, listener = watched
    items = page("b")
    assert writer(store).delete(USER, items[7].id).outcome == "applied"  # its tombstone
    counts = write_page(writer(own), USER, items)
    assert counts.created == PAGE - 1
    reads = tombstone_reads(listener)
    assert reads[0] == {} and "$in" in reads[1]["_id"]  # the probe found something: the $in
    assert own.users.find_one({own.schema.users.clerk_id: items[7].id}) is None
    assert own.users.count_documents({}) == PAGE - 1


def test_an_unrelated_tombstone_costs_the_page_the_in_read_and_refuses_nothing(
    store: Store, watched: tuple[Store, Any]
) -> None:
    own, listener = watched
    assert writer(store).delete(USER, "user_elsewhere").outcome == "applied"
    counts = write_page(writer(own), USER, page("c"))
    assert counts.created == PAGE
    assert len(tombstone_reads(listener)) == 2
