"""Whether the app has documents of its own to adopt, asked cheaply enough for every signup.

Without an index on the app's email field, adoption's lookup by email scans the users
collection. It is worth it only while the app has documents of its own (an email, no Clerk
user id): a seeded admin, a user added by hand. ``AppDocuments`` asks that once per
``APP_DOCUMENTS_TTL`` (a scan that stops at the first such document), so a signup where
there is nothing to adopt stays one write, and one where there may be something looks.
"""

from __future__ import annotations

import threading
import time

from clerksync.kinds.user import CLERK_USER_ID
from clerksync.store.database import Store

#: seconds an answer is kept
APP_DOCUMENTS_TTL = 10.0


class AppDocuments:
    """The cached answer (module docstring). A stale one is refreshed by one caller while the
    others go on with it; the first answer is waited for.

    An app document written within ``APP_DOCUMENTS_TTL`` before a signup, in a database
    that had none, is not looked up for it: the same race as the app inserting it just
    after the signup's lookup, for longer. Index the email field to close it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._known: tuple[float, bool] | None = None
        self._lock = threading.Lock()

    def exist(self) -> bool:
        known = self._known
        if known is not None and time.monotonic() - known[0] <= APP_DOCUMENTS_TTL:
            return known[1]
        if not self._lock.acquire(blocking=known is None):
            return known[1] if known is not None else True
        try:
            known = self._known
            if known is not None and time.monotonic() - known[0] <= APP_DOCUMENTS_TTL:
                return known[1]
            users = self.store.schema.users
            if not users.email:
                found = False
            else:
                query = {
                    users.clerk_id: {"$not": {"$regex": CLERK_USER_ID.pattern}},
                    users.email: {"$type": "string"},
                }
                found = self.store.users.find_one(query, {"_id": 1}) is not None
            self._known = (time.monotonic(), found)
            return found
        finally:
            self._lock.release()
