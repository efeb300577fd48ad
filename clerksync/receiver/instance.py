"""The Clerk instance deliveries come from: recorded once per process on an unbound
database, and a warning when the database is synced with another (a secret from the wrong
endpoint)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from clerksync.store.database import Store
from clerksync.store.instance import is_real_instance, learn_from_delivery

log = logging.getLogger("clerksync.server")

#: seconds before a delivery tries again after a failed try (the database away: a try waits
#: up to the receiver's database timeout, so not every delivery makes one)
RETRY = 30.0


class InstanceCheck:
    """``due`` on the event loop (one loop: no lock), ``learn`` on a thread; ``store_of``
    gives the receiver's store (made with its first request)."""

    def __init__(
        self, store_of: Callable[[], Store], db_timeout: float, *, retry: float = RETRY
    ) -> None:
        self._store_of = store_of
        self.db_timeout = db_timeout
        self.retry = retry
        self._done = False
        self._retry_at = 0.0  # after a failed try, not before (monotonic)

    def due(self, instance_id: str | None) -> bool:
        """Should this delivery record its instance? Once it says yes, not again unless
        that try fails."""
        if self._done or not instance_id or not is_real_instance(instance_id):
            return False
        if time.monotonic() < self._retry_at:
            return False
        self._done = True
        return True

    def learn(self, instance_id: str) -> None:
        """Bind an unbound database to the deliveries' Clerk instance; warn on a mismatch."""
        import pymongo

        try:
            with pymongo.timeout(self.db_timeout):
                bound = learn_from_delivery(self._store_of(), instance_id)
        except Exception as exc:  # diagnostics only: a delivery tries again in a while
            self._retry_at = time.monotonic() + self.retry
            self._done = False
            log.warning("could not record the Clerk instance: %s", exc.__class__.__name__)
            return
        if bound != instance_id:
            log.warning(
                "deliveries come from Clerk instance %s, but the database is synced with %s: "
                "is WEBHOOK_SECRET from the right endpoint?",
                instance_id,
                bound,
            )
