"""The ``sh`` blocks of the reference pages run as written (``tests/docs/scenario.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.blocks import DOCS, pages, sh_lines
from tests.docs.scenario import run_page
from tests.support.fakeclerk import FakeClerk

PAGES = [p for p in pages() if sh_lines(p) and p.parent.name != "journeys"]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_sh_blocks_run_as_written(
    page: Path, tmp_path: Path, mongo_url: str, fake_clerk: FakeClerk
) -> None:
    run_page(page, tmp_path, mongo_url, fake_clerk)
