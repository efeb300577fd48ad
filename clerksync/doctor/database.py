"""MongoDB: reachable and writable, the indexes clerksync needs and the app's that can
refuse Clerk users, the mapping against sampled documents, adoption conflicts, stopped
write-backs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from clerksync.doctor.checks import Check, ok
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
                Check(
                    "Clerk-id index",
                    "warn",
                    f"no {store.users.name} collection yet",
                    "it is created with its index by `clerksync serve` on start",
                )
            )
        elif store.has_unique_clerk_index():
            checks.append(ok("Clerk-id index", f"unique index on {where}"))
        else:
            checks.append(
                Check(
                    "Clerk-id index",
                    "fail",
                    f"{where} has no unique index: "
                    "concurrent deliveries can create duplicate users",
                    "start `clerksync serve` once to create it (it fails if duplicates "
                    "already exist: `clerksync users list --search` finds them)",
                )
            )
        checks += check_app_collection(store)
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


def check_app_collection(store: Store) -> list[Check]:
    """The app's collection under the schema: clerksync's indexes, the app's unique indexes
    that can refuse Clerk users, the mapping against sampled documents, adoption conflicts."""
    from clerksync.kinds.user import CLERK_USER_ID
    from clerksync.store.database import DUE_INDEX
    from clerksync.store.users import UserHooks

    users = store.schema.users
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
            "start `clerksync serve` (or run `clerksync reconcile --dry-run`): each index is "
            "made on its own, and the receiver logs why one cannot be",
        )
        if missing
        else ok("clerksync indexes", "the delivery log's TTL index and the write-back index")
    )
    # the app's unique indexes that can refuse a Clerk user
    sources = {f.name: f for f in users.fields}
    for index in indexes:
        keys = list(dict(index["key"]))
        if not index.get("unique") or keys in (["_id"], [users.clerk_id]):
            continue
        reasons = []
        partial = index.get("partialFilterExpression") or {}
        for key in keys:
            mapped = sources.get(key)
            if mapped is None:
                continue
            empty = mapped.default
            if key not in partial:
                shown = "null" if empty is None else repr(empty)
                what = {"email": "an email", "phone": "a phone number"}.get(
                    mapped.source, f"a {mapped.source.replace('_', ' ')}"
                )
                reasons.append(f"every Clerk user without {what} stores {key}={shown}")
            if mapped.source in ("username_or_fallback", "full_name"):
                reasons.append(f"{key} is computed and two Clerk users can share it")
        if not reasons:
            continue
        fields = ", ".join(keys)
        checks.append(
            Check(
                f"unique index {index['name']}",
                "warn",
                f"{name}({fields}) can refuse Clerk users: " + "; ".join(reasons) + " (such "
                "deliveries fail with 503 naming it, and Svix retries)",
                f"make it partial so it skips missing values: db.{name}.dropIndex("
                f'"{index["name"]}"); db.{name}.createIndex({{{keys[0]}: 1}}, {{unique: true, '
                f'partialFilterExpression: {{{keys[0]}: {{$type: "string"}}}}}}) — or drop it '
                "(Clerk keeps usernames and emails unique among its users); then "
                "`clerksync events replay --failed`",
            )
        )
    # adoption: app-created documents by email
    if users.email:
        app_made = store.users.find(
            {users.clerk_id: {"$not": {"$regex": CLERK_USER_ID.pattern}}, users.email: {"$gt": ""}},
            {users.email: 1},
        ).limit(10_000)
        by_email: dict[str, list[str]] = {}
        capitals = 0
        for doc in app_made:
            address = doc.get(users.email)
            if isinstance(address, str):
                by_email.setdefault(address.lower(), []).append(str(doc["_id"]))
                capitals += address != address.lower()
        conflicts = [ids for ids in by_email.values() if len(ids) > 1]
        if conflicts:
            listed = "; ".join(", ".join(ids) for ids in conflicts[:5])
            checks.append(
                Check(
                    "adoption",
                    "warn",
                    f"{len(conflicts)} emails are held by several app-created documents "
                    f"(Mongo ids: {listed}): a Clerk user with that email adopts none of them",
                    "merge or delete the extra documents, then `clerksync reconcile`",
                )
            )
        if capitals:
            checks.append(
                Check(
                    "adoption",
                    "warn",
                    f"{capitals} app-created documents keep their email with capitals: "
                    "adoption compares lower-case addresses (as Clerk keeps them)",
                    f"lower-case {name}.{users.email} in those documents",
                )
            )
        if by_email and not UserHooks(store).email_indexed():
            size = store.estimated_count()
            checks.append(
                Check(
                    "adoption",
                    "warn",
                    f"{len(by_email)} app-created documents wait to be adopted, and "
                    f"{name}.{users.email} has no index: every signup with a verified email "
                    f"(the receiver, ensure_user) scans the collection, {size} documents, "
                    "to look for one",
                    f"create an index on it: db.{name}.createIndex({{{users.email}: 1}})",
                )
            )
    return checks


def check_schema_sample(store: Store, sample: int = 200) -> Check:
    """The mapping against documents clerksync wrote: fields missing or of another type."""
    from clerksync.mapping import bookkeeping as bk
    from clerksync.mapping.schema import PRESETS

    users = store.schema.users
    docs = list(store.users.find({bk.UPDATED_AT: {"$exists": True}}).limit(sample))
    if not docs:
        docs = list(store.users.find({}).limit(sample))
    schema = f"schema {store.schema.name}"
    if not docs:
        return ok("schema", f"{schema}: no documents to compare yet")
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
                    f"set CLERKSYNC_SCHEMA={preset.name} (or a mapping file naming your fields)",
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
        'check CLERKSYNC_SCHEMA names your model\'s fields (README, "Your schema"); '
        "`clerksync reconcile` fills the Clerk-owned ones",
    )
