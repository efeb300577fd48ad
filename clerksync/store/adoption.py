"""Whether the app has documents of its own to adopt, asked cheaply enough for every signup.

Without an index on the app's email field, adoption's lookup by email scans the users
collection. It is worth it only while the app has documents of its own (an email, no Clerk
user id): a seeded admin, a user added by hand. ``AppDocuments`` asks that with one scan that
stops at the first such document, keeps the answer ``APP_DOCUMENTS_TTL`` seconds (longer on
a collection so large the scan takes more than ``MAX_SHARE`` of that time), and asks again
in the background: only a process's first signup waits for the scan, none of the later ones
(a request through ``ensure_user`` among them), so a signup where there is nothing to adopt
stays one write.
"""

from __future__ import annotations

import logging
import threading
import time

from clerksync.kinds.user import CLERK_USER_ID
from clerksync.store.database import Store

log = logging.getLogger("clerksync.store")

#: seconds an answer is kept, at least
APP_DOCUMENTS_TTL = 10.0
#: the share of the database's time the check may take: an answer is kept at least
#: ``1 / MAX_SHARE`` times as long as the scan took
MAX_SHARE = 0.05


def kept_for(scan_seconds: float) -> float:
    """How long an answer that took ``scan_seconds`` to get is kept."""
    return max(APP_DOCUMENTS_TTL, scan_seconds / MAX_SHARE)


class AppDocuments:
    """The cached answer (module docstring). The first answer is waited for; a stale one is
    answered at once while one background thread asks again (a failed ask keeps it).

    An app document written within the time an answer is kept before a signup, in a
    database that had none, is not looked up for it: the same race as the app inserting it
    just after the signup's lookup, for longer. Index the email field to close it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        #: (when asked, kept for, the answer)
        self._known: tuple[float, float, bool] | None = None
        self._lock = threading.Lock()

    def exist(self) -> bool:
        known = self._known
        if known is None:
            with self._lock:
                if self._known is None:
                    self._ask()
                known = self._known
            return True if known is None else known[2]
        asked, ttl, found = known
        if time.monotonic() - asked > ttl and self._lock.acquire(blocking=False):
            try:
                threading.Thread(
                    target=self._refresh, name="clerksync-app-documents", daemon=True
                ).start()
            except BaseException:
                self._lock.release()
                raise
        return found

    def _refresh(self) -> None:
        """In the background, holding the lock ``exist`` took for it."""
        try:
            self._ask()
        except Exception as exc:  # the stale answer stays; the next signup asks again
            log.warning("could not check for app documents to adopt: %s", exc)
        finally:
            self._lock.release()

    def _ask(self) -> None:
        started = time.monotonic()
        users = self.store.schema.users
        if not users.email:
            found = False
        else:
            query = {
                users.clerk_id: {"$not": {"$regex": CLERK_USER_ID.pattern}},
                users.email: {"$type": "string"},
            }
            found = self.store.users.find_one(query, {"_id": 1}) is not None
        now = time.monotonic()
        self._known = (now, kept_for(now - started), found)
