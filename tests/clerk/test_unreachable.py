"""A CLERK_API_URL that refuses connections stops a bulk job at once, naming the URL (it was
retried silently for 10-14 s, and the error did not say where it had tried); once Clerk has
answered, a refused connection is a blip to retry, as the receiver's workers always do."""

from __future__ import annotations

import socket

import pytest

from clerksync.clerk.gateway import ClerkGateway
from clerksync.errors import ClerkApiError
from clerksync.store.database import Store
from tests.support.fakeclerk import SECRET_KEY, FakeClerk
from tests.support.writes import seed_user


@pytest.fixture
def refused_url() -> str:
    """An API URL on a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.mark.parametrize("command", [("reconcile",), ("sync-metadata",), ("promote", "user_p")])
def test_a_refused_clerk_api_url_fails_once_naming_it(
    cli, store: Store, monkeypatch: pytest.MonkeyPatch, refused_url: str, command: tuple
) -> None:
    seed_user(store, "user_p")
    monkeypatch.setenv("CLERK_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("CLERK_API_URL", refused_url)
    result = cli(*command)
    assert result.exit_code == 1, result.stdout + result.stderr
    assert refused_url in result.stderr and "connection refused" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_the_job_makes_one_request_not_a_round_of_retries(refused_url: str) -> None:
    gateway = ClerkGateway(SECRET_KEY, api_url=refused_url, fail_fast=True)
    with pytest.raises(ClerkApiError) as caught:
        gateway.get_instance()
    assert caught.value.unreachable and not caught.value.retryable
    assert gateway.requests == 1


def test_the_receivers_gateway_keeps_retrying(refused_url: str) -> None:
    gateway = ClerkGateway(SECRET_KEY, api_url=refused_url)  # the write-back workers'
    with pytest.raises(ClerkApiError) as caught:
        gateway.get_instance()
    assert caught.value.retryable


def test_once_clerk_answered_a_refused_connection_is_retried(refused_url: str) -> None:
    fake = FakeClerk()
    fake.start()
    gateway = ClerkGateway(SECRET_KEY, api_url=fake.url, fail_fast=True)
    try:
        assert gateway.get_instance()["id"]
    finally:
        fake.stop()
    gateway.api_url = refused_url  # Clerk answered; now its address refuses: a blip
    with pytest.raises(ClerkApiError) as caught:
        gateway.get_instance()
    assert caught.value.retryable and not caught.value.unreachable


def test_progress_shows_no_total_until_it_is_known() -> None:
    from clerksync.cli.sync import progress_count

    assert progress_count(0, None) == ""
    assert progress_count(500, None) == "500"
    assert progress_count(12, 500) == "12/500"
