"""``promote``/``demote``: the admin flag in MongoDB, then in Clerk through the write-back's
claim, so the last write Clerk sees is the newest state."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clerksync.clerk.gateway import ClerkGateway
from clerksync.clerk.pacing import PerUserWindow, RetryPolicy, instance_pacer
from clerksync.jobs.common import call_with_retries
from clerksync.kinds.user import CLERK_USER_ID
from clerksync.mapping import bookkeeping as bk
from clerksync.store.database import Store
from clerksync.store.lookups import find_user
from clerksync.store.users import set_admin as store_set_admin
from clerksync.writeback.queue import LEASE, queue_of
from clerksync.writeback.writeback import (
    InstanceGuard,
    LeaseKeeper,
    Limits,
    write_back,
)

#: promote/demote wait this long for a write-back another process is running on the user
#: (a lease and a bit): it finishes, sees the change and lets go, then ours goes
INLINE_WAIT = LEASE.total_seconds() * 1.5


@dataclass(frozen=True)
class SetAdminResult:
    """What promote/demote did. ``user``: the user's documented JSON view (``public_view``);
    ``clerk``: ``updated``, ``waiting`` (no key), ``not linked`` (the app's own user, no
    Clerk id) or ``failed``, with ``error``."""

    user: Mapping[str, Any]
    clerk: str
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The documented ``promote``/``demote --json`` keys (``error`` only when failed)."""
        data: dict[str, Any] = {"user": dict(self.user), "clerk": self.clerk}
        if self.error is not None:
            data["error"] = self.error
        return data


def set_admin(
    store: Store,
    gateway: ClerkGateway | None,
    ident: str,
    value: bool,
    *,
    limits: Limits | None = None,
) -> SetAdminResult:
    """Set the admin flag in MongoDB (durably, with the write-back marked), then write it into
    Clerk through the same claim as the workers: if one is writing this user, this waits
    for it, so the last write Clerk sees is the newest state.

    A key for another Clerk instance than the database's is refused before any change
    (``InstanceMismatch``): its 404 would otherwise drop the write-back. MongoDB keeps
    the change whenever Clerk fails; the receiver or ``sync-metadata`` finishes it.
    """
    from clerksync.clerk.gateway import default_rate
    from clerksync.mapping.users import public_view
    from clerksync.store.instance import InstanceMismatch

    schema = store.schema
    doc = find_user(store, ident)
    clerk_id = doc.get(schema.users.clerk_id)
    linked = isinstance(clerk_id, str) and CLERK_USER_ID.match(clerk_id) is not None
    guard = None
    # A person is waiting: a few quick retries, then the mark stays for the workers.
    if gateway is not None and linked:
        limits = limits or Limits(
            pacer=instance_pacer(default_rate(gateway.secret_key)),
            policy=RetryPolicy(base=0.25, cap=2.0, attempts=3),
            per_user=PerUserWindow(),
        )
        guard = InstanceGuard(store, gateway)
        problem = call_with_retries(
            functools.partial(guard.problem, fresh=True), limits.pacer, policy=limits.policy
        )
        if problem is not None:
            raise InstanceMismatch(
                f"{problem}: nothing was changed. Check the key and URL; if this database "
                "really moves to that instance, run `clerksync reconcile --rebind`."
            )
    doc = store_set_admin(store, doc["_id"], value)
    user = public_view(doc, schema.users)
    if not linked:
        return SetAdminResult(user, "not linked")  # the app's own user: nothing in Clerk
    if gateway is None or limits is None:
        return SetAdminResult(user, "waiting")
    keeper = LeaseKeeper(queue_of(store))
    key = {"_id": doc["_id"]}
    deadline = time.monotonic() + INLINE_WAIT
    try:
        while True:
            outcome = write_back(
                queue_of(store),
                gateway,
                key,
                limits,
                keeper,
                due_only=False,
                inline=True,
                guard=guard,
            )
            if outcome.outcome != "busy":
                break
            if queue_of(store).next_try(key) is None:
                # The worker that held it is done with our change: it wrote our state, or
                # it dropped or parked the user (its error says which).
                ended = store.users.find_one(key, {bk.ERROR: 1})
                error = bk.field(ended, bk.ERROR) if ended is not None else "the user is gone"
                if error:
                    return SetAdminResult(user, "failed", str(error))
                return SetAdminResult(user, "updated")
            if time.monotonic() > deadline:
                error = "another process kept this user busy; its write-back is queued"
                return SetAdminResult(user, "failed", error)
            limits.policy.sleep(0.1)
    finally:
        keeper.stop()
    if outcome.outcome in ("written", "unchanged"):
        return SetAdminResult(user, "updated")
    return SetAdminResult(user, "failed", outcome.error or outcome.outcome)
