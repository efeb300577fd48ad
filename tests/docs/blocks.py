"""The docs' pages and their fenced code blocks, includes (``--8<-- "file"``) expanded, as
the site shows them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INCLUDE = re.compile(r'^--8<-- "([^"]+)"$', re.MULTILINE)

#: block languages the tests run, and the ones only shown (installs, Clerk's CLI, placeholders)
RUN = {"sh", "python", "toml", "js", "dotenv", "yaml"}
SHOWN = {"shell", "text", "json", "", "py", "ts"}


@dataclass(frozen=True)
class Block:
    page: str
    lang: str
    text: str


def pages() -> list[Path]:
    """Every hand-written page (``hooks/`` and ``examples/`` are not pages)."""
    return sorted(
        p for p in DOCS.rglob("*.md") if p.relative_to(DOCS).parts[0] not in ("hooks", "examples")
    )


def blocks(page: Path) -> list[Block]:
    text = INCLUDE.sub(lambda m: (DOCS / m[1]).read_text().rstrip("\n"), page.read_text())
    name = str(page.relative_to(DOCS))
    return [Block(name, m[1], m[2]) for m in FENCE.finditer(text)]


def sh_lines(page: Path) -> list[str]:
    """The page's ``sh`` lines, in order, blank and comment-only lines left out."""
    return [
        line.strip()
        for block in blocks(page)
        if block.lang == "sh"
        for line in block.text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
