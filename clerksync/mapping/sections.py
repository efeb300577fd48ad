"""One kind's collection in the app's names: the mapping section of every kind but users
(whose mapping says more: ``clerksync.mapping.users``).

A section maps the kind's logical fields (``clerksync.kinds``: ``name``, ``slug``,
``organization_id``…) and ``clerk_id``, ``created_at``, ``updated_at`` to the app's field
names; a name of None means the app keeps no such field. It also names the fields other
kinds keep on this kind's documents (``Rollup``: an organization's ``plan``). Each preset's
names come from the kinds' own modules; a mapping file's ``[organizations]`` (the kind's
plural) overrides them. A section without a collection is a kind the app does not store
(payment attempts, unless a mapping file names a collection).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clerksync.kinds.base import Kind
from clerksync.kinds.registry import rollups_onto
from clerksync.mapping import bookkeeping as bk


@dataclass(frozen=True)
class Section:
    """A kind's collection and field names (see the module docstring)."""

    kind: str
    collection: str | None
    names: Mapping[str, str | None]

    @classmethod
    def preset(cls, kind: Kind, preset: str) -> Section:
        names = dict(kind.presets[preset])
        collection = names.pop("collection")
        for _, rollup in rollups_onto(kind):
            names.update(rollup.names[preset])
        return cls(kind.name, collection, names)

    @property
    def stored(self) -> bool:
        return self.collection is not None

    @property
    def clerk_id(self) -> str:
        name = self.names["clerk_id"]
        assert name is not None
        return name

    @property
    def created_at(self) -> str | None:
        return self.names.get("created_at")

    @property
    def updated_at(self) -> str | None:
        return self.names.get("updated_at")

    def field(self, logical: str) -> str | None:
        """The app's field holding the logical field ``logical`` (None: not kept)."""
        return self.names.get(logical)

    def require(self, logical: str) -> str:
        name = self.names.get(logical)
        if name is None:
            raise KeyError(f"{self.kind} mapping keeps no {logical}")
        return name

    def values(self, kind: Kind, item: Any) -> dict[str, Any]:
        """What a Clerk state sets (``$set``): the Clerk id, every kept logical field, and the
        state's ``updated_at`` (the ordering field). A ``sticky`` field the state lacks is
        left out (the write keeps what is stored)."""
        fields: dict[str, Any] = {self.clerk_id: item.id}
        for logical, value in kind.values(item).items():
            name = self.names.get(logical)
            if name is not None and not (value is None and logical in kind.sticky):
                fields[name] = value
        fields[bk.UPDATED_AT] = item.updated_at
        return fields

    def absent_sticky(self, kind: Kind, item: Any) -> dict[str, Any]:
        """The ``sticky`` fields this state lacks: null on a document it creates."""
        values = kind.values(item) if kind.sticky else {}
        return {
            name: None
            for logical in kind.sticky
            if values.get(logical) is None and (name := self.names.get(logical)) is not None
        }

    def view(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """A stored document in logical names (``clerkId`` and each kept field)."""
        view: dict[str, Any] = {"clerk_id": doc.get(self.clerk_id)}
        for logical, name in self.names.items():
            if name is not None and logical not in ("clerk_id", "created_at", "updated_at"):
                view[logical] = doc.get(name)
        return view
