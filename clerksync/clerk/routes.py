"""Route templates: a request's method and path with every id replaced by ``{id}``, the
bounded name the receiver's metrics label Clerk requests with (never an id in a label)."""

from __future__ import annotations

#: path segments of the Backend API routes clerksync calls; any other segment is an id
ROUTE_WORDS = frozenset(
    (
        "users",
        "count",
        "metadata",
        "instance",
        "organizations",
        "organization_memberships",
        "memberships",
        "billing",
        "subscription_items",
        "organization_roles",
        "organization_permissions",
        "organization_invitations",
        "organization_domains",
        "waitlist_entries",
    )
)


def route_template(method: str, path: str) -> str:
    """``PATCH /users/user_2x…/metadata`` -> ``PATCH /users/{id}/metadata``: a bounded name
    for a request, whatever ids it carries (a metric label must never hold one)."""
    parts = [p if p in ROUTE_WORDS else "{id}" for p in path.split("?", 1)[0].split("/") if p]
    return f"{method} /" + "/".join(parts)
