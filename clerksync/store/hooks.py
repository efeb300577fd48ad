"""How each kind's states become writes on the one write path (``clerksync.store.writer``):
the plain kinds' ``Hooks`` (users override them: ``clerksync.store.users.UserHooks``), and
``WriteResult``, what one write did, for every kind."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from clerksync.errors import IndexRefused
from clerksync.kinds.base import Kind
from clerksync.mapping.documents import new_document, state_update
from clerksync.store.database import Store

Outcome = Literal["applied", "duplicate", "stale"]


@dataclass(frozen=True)
class WriteResult:
    """What one write did: ``applied``, ``duplicate`` (this state again) or ``stale`` (an
    older state, or a deleted object); whether Clerk's metadata now needs a write-back;
    whether the state took over a document the app had created (``adopted``) or created
    one (``created``)."""

    outcome: Outcome
    wants_write_back: bool = False
    adopted: bool = False
    created: bool = False


APPLIED = WriteResult("applied")
DUPLICATE = WriteResult("duplicate")
STALE = WriteResult("stale")


class Hooks:
    """How a kind's states become writes. The plain kinds' answers; users' override them
    (``clerksync.store.users.UserHooks``)."""

    #: a stored state means Clerk's metadata may need a write-back (users)
    writes_back = False

    def __init__(self, store: Store, kind: Kind) -> None:
        self.store = store
        self.kind = kind

    def update(self, item: Any, now: datetime, *, creating: bool = False) -> tuple[dict, bool]:
        """The update for one state, and whether it is final as it is: it carries its own
        write-back mark (a user whose Clerk copy lacks our keys), or the kind has no
        write-back. Otherwise the writer adds the mark, or first tries the write with the
        ``agreeing`` filter. ``creating``: the write may create the document."""
        return state_update(self.kind, self.store.schema.section(self.kind), item, now), True

    def agreeing(self, item: Any) -> dict[str, Any] | None:
        """A filter matching only a document that needs no write-back for this state."""
        return None

    def mark(self, update: dict[str, Any], now: datetime) -> dict[str, Any]:
        """``update`` with the write-back marked due."""
        return update

    def unused(self, update: Mapping[str, Any]) -> None:
        """A creating ``update`` that created nothing (its insert was refused): what it
        allocated may be handed out again (users' app id)."""

    def needs_create_values(self) -> bool:
        """Does a created document get values an update must not (the app id)?"""
        return False

    def may_adopt(self, item: Any) -> bool:
        """Could this state take over a document the app created, by what it says alone
        (no database read)? ``adoptable`` then says whether it is worth looking."""
        return False

    def adoptable(self, item: Any) -> bool:
        """Could this state take over a document the app created itself?"""
        return False

    def adopt_when_refused(self) -> bool:
        """Is an adoptable document sure to refuse the insert (a unique email index)? Then it
        is looked up only when the insert is refused."""
        return False

    def adopt(self, item: Any, now: datetime) -> WriteResult | None:
        return None

    def retry_refused(self, exc: IndexRefused) -> bool:
        """May the write be tried once more after this refusal (the app's own app id index:
        the counter is reseeded above the app's ids)?"""
        return False

    # -- a page of states (``clerksync.store.pages``) ----------------------------------------

    def page_candidates(self) -> Mapping[str, list[Any]] | None:
        """What a walk of every page reads once for the run (users: the app's documents to
        adopt, by email), handed to each page write."""
        return None

    def plan_fields(self) -> dict[str, int]:
        """What the page's planning read takes of each stored document, besides its version."""
        return {}

    def take_over_page(
        self, fresh: list[Any], now: datetime, candidates: Mapping[str, list[Any]] | None
    ) -> tuple[set[str], int]:
        """Adopt what the page's new objects can: (their ids, how many were adopted)."""
        return set(), 0

    def adoptable_in(
        self, fresh: list[Any], candidates: Mapping[str, list[Any]] | None
    ) -> set[str]:
        """The ids of ``fresh`` a page write would adopt (a dry run's count)."""
        return set()

    def prepare(self, items: Iterable[Any], now: datetime) -> dict[str, dict[str, Any]]:
        """The documents a page write would insert, by Clerk id, made ahead of it (reconcile
        makes them in its reader thread while the page before is written)."""
        return {item.id: self._document(item, now) for item in items}

    def new_documents(
        self, fresh: list[Any], now: datetime, prepared: Mapping[str, dict[str, Any]] | None
    ) -> list[dict[str, Any]]:
        """The documents a page inserts for ``fresh``: those ``prepare`` made, or new ones."""
        made = prepared or {}
        return [made.get(item.id) or self._document(item, now) for item in fresh]

    def _document(self, item: Any, now: datetime) -> dict[str, Any]:
        section = self.store.schema.section(self.kind)
        return new_document(state_update(self.kind, section, item, now))

    def page_update(
        self, item: Any, now: datetime, held: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, Any]:
        """The ordered update of a stored object (``held``: the planning read's documents)."""
        return self.update(item, now)[0]

    def upserted(self, entries: list[Mapping[str, Any]], now: datetime) -> None:
        """Documents a page's ordered updates created (gone between the plan and the write)."""
