"""MongoDB: reachable and writable, the indexes clerksync needs and the app's that can
refuse Clerk users, the mapping against sampled documents, adoption conflicts, stopped
write-backs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from clerksync.doctor.checks import Check, info, ok
from clerksync.errors import ClerkSyncError
from clerksync.settings import Settings
from clerksync.writeback.queue import queue_of

if TYPE_CHECKING:
    from clerksync.store.database import Store


def check_mongodb(settings: Settings) -> tuple[list[Check], int | None, int | None]:
    """Reachability, a write round trip, the unique index; returns (checks, users, pending)."""
    from clerksync.store.connect import connect
    from clerksync.store.mongo import describe_mongo_error

    malformed = settings.problems("MONGODB_URL", "MONGODB_DB")
    if malformed:
        name, problem = malformed[0]
        return (
            [Check("MongoDB", "fail", f"not tried: {name} {problem}", f"fix {name} first")],
            None,
            None,
        )
    try:
        store = connect(settings)
        version, ms = store.ping()
    except Exception as exc:
        if not isinstance(exc, ClerkSyncError):
            exc = ClerkSyncError(describe_mongo_error(exc))
        return (
            [
                Check(
                    "MongoDB",
                    "fail",
                    str(exc),
                    "start MongoDB or fix MONGODB_URL; then run `clerksync doctor` again",
                )
            ],
            None,
            None,
        )
    checks = [ok("MongoDB", f"database {store.name!r}, server {version}, round trip {ms:.1f} ms")]
    try:
        from bson import ObjectId

        scratch = store.db.get_collection("clerksync_doctor")
        marker = ObjectId()
        scratch.insert_one({"_id": marker, "at": time.time()})
        found = scratch.find_one({"_id": marker}) is not None
        scratch.delete_one({"_id": marker})
        checks.append(
            ok("write round trip", "insert, read, delete")
            if found
            else Check(
                "write round trip",
                "fail",
                "a written document could not be read back",
                "check the user in MONGODB_URL has readWrite on the database",
            )
        )
        where = f"{store.users.name}.{store.clerk_id}"
        if store.users.name not in store.db.list_collection_names():
            checks.append(
                info(
                    "Clerk-id index",
                    f"no {store.users.name} collection yet",
                    "it is created with its index by `clerksync serve` on start",
                )
            )
        elif store.has_unique_clerk_index():
            checks.append(ok("Clerk-id index", f"unique index on {where}"))
        else:
            twins, remove = shared_clerk_ids(store)
            checks.append(
                Check(
                    "Clerk-id index",
                    "fail",
                    f"{where} has no unique index: "
                    "concurrent deliveries can create duplicate users"
                    + (f"; documents share a Clerk id: {twins}" if twins else ""),
                    (
                        "delete the extra copies (keep one document per Clerk id), then make "
                        "the index (every command that writes makes it first)"
                        if twins
                        else "make it: `clerksync serve` does on start, and so does every "
                        "command that writes"
                    ),
                    (*remove, "clerksync events replay --failed"),
                )
            )
        checks += check_app_collection(store, has_key=bool(settings.clerk_secret_key))
        users, pending = store.count(), queue_of(store).pending()
        checks += check_stopped_write_backs(store)
    except Exception as exc:  # database errors mid-check: report, never trace
        checks.append(
            Check(
                "write round trip",
                "fail",
                str(exc) if isinstance(exc, ClerkSyncError) else describe_mongo_error(exc),
                "check the user in MONGODB_URL has readWrite on the database",
            )
        )
        return checks, None, None
    finally:
        store.close()
    return checks, users, pending


def shared_clerk_ids(store: Store, limit: int = 5) -> tuple[str, list[str]]:
    """Clerk ids several documents share (what keeps the unique index from being made): a
    few named, and the commands deleting every copy but the first (the oldest ``_id``)."""
    key = store.clerk_id
    groups = store.users.aggregate(
        [
            {"$match": {key: {"$type": "string"}}},
            {"$group": {"_id": f"${key}", "ids": {"$push": "$_id"}, "n": {"$sum": 1}}},
            {"$match": {"n": {"$gt": 1}}},
            {"$limit": limit},
        ]
    )
    named, remove = [], []
    for group in groups:
        ids = sorted(group["ids"])
        named.append(f"{group['_id']} ({len(ids)} documents)")
        remove += [f'db.{store.users.name}.deleteOne({{ _id: ObjectId("{i}") }})' for i in ids[1:]]
    return ", ".join(named), remove


def check_stopped_write_backs(store: Store) -> list[Check]:
    """Write-backs that stopped (parked, or dropped because Clerk did not know the user): no
    longer pending, yet Clerk does not hold what MongoDB says."""
    queue = queue_of(store)
    parked, dropped = queue.parked(), queue.dropped()
    if not parked and not dropped:
        return []
    parts = [f"{parked} parked"] if parked else []
    if dropped:
        parts.append(f"{dropped} dropped (not found in Clerk)")
    examples = "; ".join(f"{cid}: {error[:80]}" for cid, error in queue.stopped_examples(3))
    return [
        Check(
            "stopped write-backs",
            "warn",
            f"{', '.join(parts)} metadata write-back{'' if parked + dropped == 1 else 's'}, "
            f"e.g. {examples}",
            "`clerksync sync-metadata` writes every user whose Clerk copy differs, these "
            "included (users Clerk does not have are counted missing; `clerksync reconcile` "
            "lists them as orphans); the next change of a user also queues it again",
        )
    ]


def check_app_collection(store: Store, *, has_key: bool = False) -> list[Check]:
    """The app's collection under the schema: clerksync's indexes, the app's unique indexes
    that can refuse Clerk users, the mapping against sampled documents, adoption conflicts."""
    from clerksync.doctor.appdata import (
        check_adoption,
        check_failed_deliveries,
        check_owed_plans,
        check_unique_indexes,
    )
    from clerksync.store.database import DUE_INDEX

    name = store.users.name
    indexes = store.app_indexes()
    checks = [check_schema_sample(store)]
    # clerksync's own indexes, each one it needs
    missing = []
    if not any(dict(i["key"]) == {"expiresAt": 1} for i in store.deliveries.list_indexes()):
        missing.append(f"{store.deliveries.name} TTL (stored payloads never expire without it)")
    if not any(i["name"] == DUE_INDEX for i in indexes) and indexes:
        missing.append(f"{name} {DUE_INDEX} (finding due write-backs scans the collection)")
    fresh = not indexes  # nothing ran here yet: a first start makes them
    checks.append(
        Check(
            "clerksync indexes",
            "warn" if fresh else "fail",
            "missing: " + "; ".join(missing),
            "`clerksync serve` makes them on start, and so does every command that writes "
            "(this one also replays what failed, nothing if nothing did); each index is made "
            "on its own, and one that cannot be is named with why",
            ("clerksync events replay --failed",),
        )
        if missing
        else ok("clerksync indexes", "the delivery log's TTL index and the write-back index")
    )
    checks += check_unique_indexes(store, indexes)
    checks += check_adoption(store, has_key)
    checks += check_failed_deliveries(store)
    checks += check_owed_plans(store)
    return checks


def check_schema_sample(store: Store, sample: int = 200) -> Check:
    """The mapping against documents clerksync wrote: fields missing or of another type."""
    from clerksync.mapping import bookkeeping as bk
    from clerksync.mapping.schema import PRESETS

    users = store.schema.users
    # Only what clerksync wrote is compared: the app's own documents may lack Clerk's fields
    # (a null Clerk id waits for its user to be adopted); they only tell a wrong preset.
    docs = list(store.users.find({bk.UPDATED_AT: {"$exists": True}}).limit(sample))
    schema = f"schema {store.schema.name}"
    if not docs:
        theirs = list(store.users.find({}).limit(sample))
        for preset in PRESETS.values():
            if preset.users.clerk_id != users.clerk_id and any(
                preset.users.clerk_id in d and users.clerk_id not in d for d in theirs
            ):
                return Check(
                    "schema",
                    "fail",
                    f"{schema}: the documents have {preset.users.clerk_id}, not "
                    f"{users.clerk_id}, as the {preset.name} schema writes",
                    f"set CLERKSYNC_SCHEMA={preset.name} in .env.local (or a mapping file "
                    "naming your fields)",
                    (f"echo CLERKSYNC_SCHEMA={preset.name} >> .env.local",),
                )
        return ok(
            "schema",
            f"{schema}: no documents clerksync wrote to compare yet"
            + (f" ({len(theirs)} of the app's)" if theirs else ""),
        )
    if not any(users.clerk_id in d for d in docs):
        for preset in PRESETS.values():
            if preset.users.clerk_id != users.clerk_id and any(
                preset.users.clerk_id in d for d in docs
            ):
                return Check(
                    "schema",
                    "fail",
                    f"{schema}: no sampled document has {users.clerk_id}; they have "
                    f"{preset.users.clerk_id}, as the {preset.name} schema writes",
                    f"set CLERKSYNC_SCHEMA={preset.name} in .env.local (or a mapping file "
                    "naming your fields)",
                    (f"echo CLERKSYNC_SCHEMA={preset.name} >> .env.local",),
                )
    expected: dict[str, tuple[type, ...]] = {users.clerk_id: (str,)}
    for mapped in users.fields:
        expected[mapped.name] = (str, type(None))
    if users.app_id:
        expected[users.app_id] = (int,)
    admin = users.admin
    expected[admin.field] = (bool,) if isinstance(admin.value, bool) else (str, type(None))
    missing: dict[str, int] = {}
    wrong: dict[str, str] = {}
    for doc in docs:
        for field, types in expected.items():
            if field not in doc:
                missing[field] = missing.get(field, 0) + 1
            elif not isinstance(doc[field], types) or (
                types == (int,) and isinstance(doc[field], bool)
            ):
                wrong.setdefault(field, type(doc[field]).__name__)
    if not missing and not wrong:
        return ok(
            "schema",
            f"{schema}: {len(docs)} sampled "
            f"{'document matches' if len(docs) == 1 else 'documents match'} the mapping",
        )
    parts = []
    if missing:
        parts.append("missing " + ", ".join(f"{f} ({n})" for f, n in sorted(missing.items())))
    if wrong:
        parts.append("of another type " + ", ".join(f"{f} ({t})" for f, t in wrong.items()))
    return Check(
        "schema",
        "warn",
        f"{schema}, {len(docs)} sampled documents: " + "; ".join(parts),
        "check CLERKSYNC_SCHEMA names your model's fields (docs/schema.md); "
        "`clerksync reconcile` fills the Clerk-owned ones",
    )
