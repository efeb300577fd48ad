"""clerksync's own fields on an app's document: one sub-document, ``clerksync``, out of the
app's way.

An app's model (Mongoose, Beanie) ignores a field it does not declare, and one sub-document
is one name to leave alone, to exclude from a projection, or to drop. Everything clerksync
needs to order deliveries and to drive the Clerk write-back lives under it:

``clerksync.updatedAt``  Clerk's ``updated_at`` (ms) of the stored state: the ordering rule
``clerksync.metadata``   Clerk's copy of the written-back keys, as last seen
``clerksync.dueAt``      set while a write-back is pending (sparse index): when it is due
``clerksync.seq``        counts changes, so finishing an older write-back never clears a newer one
``clerksync.attempts``   failed write-back attempts (Clerk's failures), for the backoff
``clerksync.faults``     failures that were not Clerk's (a document the code cannot handle),
                         counted apart: only these park a user, never Clerk's, never the
                         database being away
``clerksync.error``      the last write-back failure, for ``doctor``
``clerksync.leaseOwner`` the process (a random id) writing this user back right now
``clerksync.leaseUntil`` until when that claim holds unless renewed (kept short and renewed
                         while the write runs, so a killed process holds nobody for long)
``clerksync.writes``     the times (epoch s) of the last metadata writes: Clerk's per-user
                         limit, seen by every process
``clerksync.parkedAt``   set when a write-back failed in a way retrying cannot fix; the
                         next change of the user queues it again
``clerksync.rollups``    on a user's or organization's document, per kind that keeps
                         fields there (``subscriptionItems``: the plan), a token each
                         recompute changes: a recompute writes only if it is the one it read

Filters and updates use the dotted paths; ``field`` reads one from a document.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ROOT = "clerksync"
UPDATED_AT = f"{ROOT}.updatedAt"
SEEN = f"{ROOT}.metadata"
DUE = f"{ROOT}.dueAt"
SEQ = f"{ROOT}.seq"
ATTEMPTS = f"{ROOT}.attempts"
FAULTS = f"{ROOT}.faults"
ERROR = f"{ROOT}.error"
LEASE_OWNER = f"{ROOT}.leaseOwner"
LEASE_UNTIL = f"{ROOT}.leaseUntil"
WRITES = f"{ROOT}.writes"
PARKED = f"{ROOT}.parkedAt"
ROLLUPS = f"{ROOT}.rollups"

_MISSING = object()


def field(doc: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """The value at a dotted ``path`` of ``doc``, or ``default`` when any step is missing."""
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return default
        value = value.get(part, _MISSING)
        if value is _MISSING:
            return default
    return value


def has(doc: Mapping[str, Any], path: str) -> bool:
    """Whether ``doc`` holds a value (even null) at the dotted ``path``."""
    return field(doc, path, _MISSING) is not _MISSING


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``: an update's ``$set`` as the document it would
    make (an insert must not carry dotted keys: the server would store them literally)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out
