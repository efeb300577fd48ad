"""The receiver's indexes, made off the event loop and retried until the Clerk-id uniqueness
is enforced: until then every delivery is a 503 (a retry later), never a 2xx that could
have made a duplicate user, and ``/readyz`` says why."""

from __future__ import annotations

import logging
import threading

from clerksync.errors import ClerkSyncError
from clerksync.store.database import Store

log = logging.getLogger("clerksync.server")


class IndexMaker:
    """Makes clerksync's indexes on a thread of its own, again until the Clerk-id uniqueness
    is enforced. ``ready`` is set then; ``problem`` says why not yet, ``warnings`` names the
    indexes that could not be made although the uniqueness holds."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.problem = "the indexes are being made"
        self.warnings: list[str] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, store: Store) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, args=(store,), name="clerksync-indexes", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self, store: Store, first_delay: float = 1.0, max_delay: float = 30.0) -> None:
        delay = first_delay
        while not self._stopping.is_set():
            try:
                report = store.ensure_indexes()
            except ClerkSyncError as exc:
                problem = f"database: {exc}"
            else:
                for failure in report.failures:
                    log.error(
                        "index %s on %s could not be made: %s",
                        failure.name,
                        failure.collection,
                        failure.error,
                    )
                self.warnings = [
                    f"index {f.name} on {f.collection} could not be made: {f.error}"
                    for f in report.failures
                ]
                if report.clerk_id_enforced:
                    self.ready.set()
                    return
                where = f"{store.users.name}.{store.clerk_id}"
                reasons = "; ".join(f.error or "" for f in report.failures) or "unknown"
                problem = f"no unique index on {where} ({reasons})"
            self.problem = problem
            log.error(
                "deliveries are answered 503 until the Clerk-id uniqueness is enforced: %s; "
                "retrying in %.0f s (`clerksync doctor` says more)",
                problem,
                delay,
            )
            self._stopping.wait(delay)
            delay = min(delay * 2, max_delay)
