"""Which Clerk instance a database is synced with, so a bulk job cannot run against another.

A dev key in a production shell, or a typo in ``CLERK_API_URL``, points a
bulk job at an instance whose users are not this database's: ``reconcile``
would then create strangers, and ``--prune`` would delete everyone. So the
database remembers its instance in ``clerksync_meta`` (document
``{_id: "instance", instanceId, environmentType, boundAt, source}``), learnt
from the first bulk job (``GET /instance``) or the first delivery that
carries ``instance_id``. A bulk job against another instance stops with
``InstanceMismatch`` (exit 2) until it is run with ``--rebind``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from clerksync.errors import ConfigError
from clerksync.store.mongo import utcnow

if TYPE_CHECKING:
    from pymongo.collection import Collection

    from clerksync.clerk.gateway import ClerkGateway
    from clerksync.store.database import Store

META = "clerksync_meta"
INSTANCE_DOC = "instance"


class InstanceMismatch(ConfigError):
    """The key belongs to another Clerk instance than the one this database is synced with."""


#: instance ids no real Clerk instance has: what ``send`` and the tests used to put in every
#: event, and the ids of Clerk's documentation examples. A delivery carrying one must not bind
#: a database (every later bulk job would stop, "synced with ins_clerksync_local"), nor be
#: compared with the binding (a false "wrong WEBHOOK_SECRET?" on every ``send``).
NOT_REAL_INSTANCES = frozenset(
    {"ins_clerksync_local", "ins_2g7np7Hrk0SN6kj5EDMLDaKNL0S", "ins_123"}
)


def is_real_instance(instance_id: str) -> bool:
    """False for the placeholder ids of local tools and Clerk's documentation examples."""
    return instance_id not in NOT_REAL_INSTANCES


def meta_collection(store: Store) -> Collection[Any]:
    from pymongo import WriteConcern

    return store.db.get_collection(META, write_concern=WriteConcern(w="majority", j=True))


def bound_instance(store: Store) -> Mapping[str, Any] | None:
    """The instance this database is synced with, or None when it was never bound."""
    return meta_collection(store).find_one({"_id": INSTANCE_DOC})


def bind(store: Store, instance_id: str, *, environment: str | None, source: str) -> None:
    """Remember ``instance_id`` (replacing any earlier binding)."""
    meta_collection(store).replace_one(
        {"_id": INSTANCE_DOC},
        {
            "instanceId": instance_id,
            "environmentType": environment,
            "boundAt": utcnow(),
            "source": source,
        },
        upsert=True,
    )


def learn_from_delivery(store: Store, instance_id: str) -> str | None:
    """Bind an unbound database to a verified delivery's instance; returns the bound id."""
    meta_collection(store).update_one(
        {"_id": INSTANCE_DOC},
        {
            "$setOnInsert": {
                "instanceId": instance_id,
                "environmentType": None,
                "boundAt": utcnow(),
                "source": "delivery",
            }
        },
        upsert=True,
    )
    bound = bound_instance(store)
    return bound.get("instanceId") if bound else None


def ensure_same_instance(
    store: Store, gateway: ClerkGateway, *, rebind: bool = False, dry_run: bool = False
) -> dict[str, Any]:
    """Check (or make) the binding before a bulk job; InstanceMismatch if the key is for another.

    Returns ``{"instance": id, "bound": "new" | "same" | "rebound" | "not yet"}`` for the
    summary (``not yet``: a dry run on an unbound database, which binds nothing).
    """
    instance = gateway.get_instance()
    current = str(instance["id"])
    environment = instance.get("environment_type")
    bound = bound_instance(store)
    if bound is None and dry_run:  # a dry run writes nothing, not even the binding
        return {"instance": current, "bound": "not yet"}
    if bound is None:
        bind(store, current, environment=environment, source="GET /instance")
        return {"instance": current, "bound": "new"}
    if bound.get("instanceId") == current:
        return {"instance": current, "bound": "same"}
    if rebind and dry_run:
        return {"instance": current, "bound": "would rebind"}
    if rebind:
        bind(store, current, environment=environment, source="--rebind")
        return {"instance": current, "bound": "rebound"}
    raise InstanceMismatch(
        f"database {store.name!r} is synced with Clerk instance {bound.get('instanceId')} "
        f"({bound.get('environmentType') or 'environment unknown'}), but CLERK_SECRET_KEY and "
        f"CLERK_API_URL reach {current} ({environment or 'environment unknown'}). Check the key "
        "and URL; if this database really moves to that instance, rerun with --rebind."
    )
