"""Metric labels for Clerk requests: each request's route with every id replaced, for the
gateway's own routes and every path a kind's list and lookups name (the kinds add their
words), and never an id."""

from __future__ import annotations

import re

import pytest

from clerksync.clerk.routes import route_template
from clerksync.kinds.registry import KINDS


def kind_paths() -> list[str]:
    paths = []
    for kind in KINDS:
        if kind.listing is not None:
            listing = kind.listing
            paths += [listing.path, *listing.one, listing.per_parent or ""]
    return [p for p in paths if p]


@pytest.mark.parametrize("template", kind_paths())
def test_every_path_a_kind_requests_is_labelled_by_its_route(template: str) -> None:
    path = template.split("?", 1)[0]
    filled = re.sub(r"\{[^}]+\}", "x_2Vb9QkZ", path)
    assert route_template("GET", filled) == "GET " + re.sub(r"\{[^}]+\}", "{id}", path)


def test_the_gateways_own_routes_and_no_id_in_a_label() -> None:
    assert route_template("PATCH", "/users/user_2x/metadata") == "PATCH /users/{id}/metadata"
    assert route_template("GET", "/jwks") == "GET /jwks"
    assert route_template("GET", "/users/count?x=1") == "GET /users/count"
    assert route_template("GET", "/users/grace@example.com") == "GET /users/{id}"
    assert route_template("GET", "/somethingelse/abc") == "GET /{id}/{id}"


def test_route_words_are_words_never_ids() -> None:
    import clerksync.kinds.registry  # noqa: F401  (every kind has added its words)
    from clerksync.clerk.routes import ROUTE_WORDS

    assert all(re.fullmatch(r"[a-z_]+", word) for word in ROUTE_WORDS), sorted(ROUTE_WORDS)
