"""pymongo command listeners: the commands one client sends, whatever else the test server
is serving (what an operation costs the database, counted), and another writer's turn placed
exactly between two of them (``AfterCommand``)."""

from __future__ import annotations

from typing import Any

from pymongo import MongoClient, monitoring

from clerksync.store.database import Store


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append((event.command_name, event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def names(self) -> list[str]:
        return [name for name, _ in self.sent]


class AfterCommand(monitoring.CommandListener):
    """A command listener that runs ``then`` once, in the commanding thread, right after the
    first command ``when`` picks (from its start event) succeeds: another writer's turn,
    exactly between two of a job's commands."""

    def __init__(self, when: Any, then: Any) -> None:
        self.when, self.then = when, then
        self.picked: int | None = None
        self.done = False

    def started(self, event: Any) -> None:
        if self.picked is None and self.when(event):
            self.picked = event.request_id

    def failed(self, event: Any) -> None: ...

    def succeeded(self, event: Any) -> None:
        if not self.done and event.request_id == self.picked:
            self.done = True
            self.then()


def listened(store: Store, *listeners: Any, appname: str | None = None) -> Store:
    """The test database on a client of its own that ``listeners`` hear (close its client),
    named ``appname`` (a fail point aimed at it stops no other client)."""
    address = store.client.address
    assert address is not None
    client: MongoClient[Any] = MongoClient(
        host=address[0],
        port=address[1],
        appname=appname,
        tz_aware=True,
        directConnection=True,
        event_listeners=list(listeners),
    )
    return Store(client, store.name, store.schema)
