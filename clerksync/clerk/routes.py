"""Route templates: a request's method and path with every id replaced by ``{id}``, the
bounded name the receiver's metrics label Clerk requests with (never an id in a label)."""

from __future__ import annotations

#: path segments of the Backend API routes clerksync calls: the gateway's own here, and
#: those of each kind's list and lookups, added by the kind (``add_route_words``); any other
#: segment is an id
ROUTE_WORDS: set[str] = {"users", "count", "metadata", "instance", "jwks", "organizations"}


def add_route_words(*templates: str) -> None:
    """The fixed segments of path templates (``/organizations/{parent}/domains``: the
    ``{...}`` ones are ids), so the requests a kind makes are labelled by route."""
    for template in templates:
        for part in template.split("?", 1)[0].split("/"):
            if part and "{" not in part:
                ROUTE_WORDS.add(part)


def route_template(method: str, path: str) -> str:
    """``PATCH /users/user_2x…/metadata`` -> ``PATCH /users/{id}/metadata``: a bounded name
    for a request, whatever ids it carries (a metric label must never hold one)."""
    parts = [p if p in ROUTE_WORDS else "{id}" for p in path.split("?", 1)[0].split("/") if p]
    return f"{method} /" + "/".join(parts)
