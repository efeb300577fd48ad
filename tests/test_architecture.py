"""The package's shape is a contract: no import circle (function-level and TYPE_CHECKING
imports included), no module over 400 lines, every subpackage saying what it owns.

import-linter's layers contract (``make lint``) keeps lower layers from importing higher
ones; this also catches a circle between modules of one layer."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

PACKAGE = Path(__file__).resolve().parents[1] / "clerksync"


def _circles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """Each import ``a -> b`` for which ``b`` leads back to ``a``: the chain of the circle."""
    found = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(imported, module)
            if back is not None:
                found.append((module, *back))
    return found


def test_no_import_circle_of_any_kind() -> None:
    graph = grimp.build_graph("clerksync", include_external_packages=False)
    assert {"clerksync.store.database", "clerksync.cli.sync"} <= graph.modules  # it read the code
    assert _circles(graph) == []


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(PACKAGE.parent)): count
        for path in PACKAGE.rglob("*.py")
        if (count := len(path.read_text().splitlines())) > 400
    }
    assert long == {}


def test_every_subpackage_says_what_it_owns() -> None:
    silent = [
        str(init.parent.relative_to(PACKAGE.parent))
        for init in PACKAGE.rglob("__init__.py")
        if not ast.get_docstring(ast.parse(init.read_text()))
    ]
    assert silent == []
