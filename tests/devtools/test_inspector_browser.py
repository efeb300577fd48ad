"""``clerksync inspect`` in a real browser: Debian's chromium driven by Playwright (the system
browser, nothing downloaded), against the real receiver fed by ``clerksync send``.

Skipped, with the reason, only where no browser can be had (a developer without root);
with ``CI`` set a missing browser fails the run instead: CI's setup installs it
(``make setup``). A screenshot of each page is kept under the test's tmp dir (the path is
printed); ``CLERKSYNC_SCREENSHOTS=DIR`` copies them there as well.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clerksync.doctor import run_doctor
from clerksync.settings import load_settings
from clerksync.store.database import Store
from tests.conftest import WEBHOOK_SECRET
from tests.support.inspector import RunningInspector
from tests.support.receiver import RunningReceiver

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 15_000  # the longest a page is given to show something (a bound, not a figure)


def browser_problem() -> str | None:
    if not os.path.exists(CHROMIUM):
        return (
            f"no {CHROMIUM}: Debian's chromium is not installed (`make setup` installs it "
            "when run as root: apt-get install -y chromium)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (`make setup` installs the dev extra)"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    problem = browser_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}; CI must run the browser tests", pytrace=False)
        pytest.skip(problem)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 800},
        )
        context.set_default_timeout(WAIT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    opened = browser.new_page()
    opened.on("dialog", lambda dialog: dialog.accept())  # "Replay N failed deliveries?"
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def inspector(store: Store, receiver: RunningReceiver) -> Iterator[RunningInspector]:
    settings = load_settings()
    running = RunningInspector(store, doctor=lambda: run_doctor(settings)).start()
    try:
        yield running
    finally:
        running.stop()


def screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"inspector-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    kept = os.environ.get("CLERKSYNC_SCREENSHOTS")
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(kept) / path.name)
    return path


def send(cli: Any, receiver: RunningReceiver, *args: str) -> dict[str, Any]:
    result = cli("send", *args, "--url", receiver.url, "--secret", WEBHOOK_SECRET, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def rows(page: Any) -> list[str]:
    return page.locator("#rows tr[data-id]").evaluate_all("rs => rs.map(r => r.dataset.id)")


def test_the_list_updates_live_when_send_posts_and_a_filter_narrows_it(
    page: Any, inspector: RunningInspector, receiver: RunningReceiver, cli: Any, tmp_path: Path
) -> None:
    page.goto(inspector.base + "/")
    page.wait_for_selector("#rows tr.empty")
    page.evaluate("window.notReloaded = true")

    send(cli, receiver, "user.created", "--email", "grace@example.com", "--first-name", "Grace")
    page.wait_for_selector("#rows tr[data-id]")  # appeared, no reload
    send(cli, receiver, "session.created")
    expect(page.locator("#rows tr[data-id]")).to_have_count(2)
    assert page.evaluate("window.notReloaded") is True
    assert page.locator("#rows tr").first.locator("td").nth(2).inner_text() == "session.created"
    assert "grace@example.com" not in page.locator("table.deliveries").inner_text()
    screenshot(page, tmp_path, "list")

    page.select_option("select[name=outcome]", "applied")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/?*outcome=applied*")
    assert len(rows(page)) == 1
    assert page.locator("#rows tr .badge").first.inner_text() == "applied"
    page.fill("input[name=type]", "session.created")
    page.click("form.filters button[type=submit]")
    page.wait_for_selector("#rows tr.empty")  # applied and session.created: none
    screenshot(page, tmp_path, "list-filtered")


def test_the_diff_shows_the_changed_field_and_replay_adds_a_replay_row(
    page: Any, inspector: RunningInspector, receiver: RunningReceiver, cli: Any, tmp_path: Path
) -> None:
    send(cli, receiver, "user.created", "--email", "grace@example.com", "--last-name", "Murray")
    send(cli, receiver, "user.updated", "--last-name", "Hopper")
    page.goto(inspector.base + "/")
    expect(page.locator("#rows tr[data-id]")).to_have_count(2)
    page.locator("#rows tr", has_text="user.updated").locator("a").first.click()
    page.wait_for_selector("table.changes")
    change = page.locator('table.changes tr[data-path="last_name"]')
    assert change.locator("td.old").inner_text() == '"Murray"'
    assert change.locator("td.new").inner_text() == '"Hopper"'
    assert "grace@example.com" in page.locator("pre.payload").inner_text()
    screenshot(page, tmp_path, "delivery")

    page.click("#replay")
    page.wait_for_selector("#replays tr.replay-row")
    assert "duplicate" in page.locator("#replay-result").inner_text()
    assert "(was applied)" in page.locator("#replay-result").inner_text()
    screenshot(page, tmp_path, "replayed")

    page.goto(inspector.base + "/")
    page.wait_for_selector("#rows tr.replay")  # the replay, logged as one, in the list
    assert page.locator("#rows tr.replay .badge.replay").count() == 1


def test_the_chart_and_the_doctor_pages(
    page: Any, inspector: RunningInspector, receiver: RunningReceiver, cli: Any, tmp_path: Path
) -> None:
    send(cli, receiver, "user.created", "--email", "ada@example.com")
    send(cli, receiver, "session.created")
    receiver.receiver.log.flush_now()
    page.goto(inspector.base + "/chart")
    assert page.locator("svg.chart rect.bar").count() == 2  # applied and ignored, stacked
    assert "applied 1" in page.locator("ul.legend").inner_text()
    screenshot(page, tmp_path, "chart")

    page.goto(inspector.base + "/doctor")
    page.wait_for_selector("#checks li.check")  # loaded after the page, by htmx
    assert "MongoDB" in page.locator("#checks").inner_text()
    screenshot(page, tmp_path, "doctor")
