"""The app's data against the chain: deliveries that failed and were never replayed, payers'
plans a stopped job never recomputed, app documents that duplicate a linked user, the app's
unique indexes that refuse (or will refuse) Clerk users, and the documents waiting to be
adopted.

Each is a failing check when users are missing or duplicated now (doctor exits 1), a
warning when they will be at the next signup of a kind, and every fix is the commands that,
followed as written, make the check pass (``clerksync.doctor.fixes`` for index fixes in the
app's ORM's words).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clerksync.doctor.checks import Check
from clerksync.doctor.fixes import email_index_fix, partial_index_fix, where_declared
from clerksync.store.mongo import utcnow

if TYPE_CHECKING:
    from clerksync.store.database import Store

REPLAY = "clerksync events replay --failed"


def check_failed_deliveries(store: Store) -> list[Check]:
    """Deliveries whose latest word is ``failed``: users or organizations Clerk has and the
    database does not, until they are replayed (or Svix's retry lands)."""
    from clerksync.deliverylog.readers import still_failed

    failed = still_failed(store)
    if not failed:
        return []
    examples = "; ".join(
        f"{svix_id} ({d.type}): {(d.error or 'no error recorded')[:160]}"
        for svix_id, d in list(failed.items())[:3]
    )
    count = len(failed)
    return [
        Check(
            "failed deliveries",
            "fail",
            f"{count} deliver{'y' if count == 1 else 'ies'} failed and never replayed, e.g. "
            f"{examples}",
            "fix what the errors name (an index of the app's: its check below says how), "
            "then replay them (`clerksync events list --outcome failed` lists them all)",
            (REPLAY,),
        )
    ]


def check_owed_plans(store: Store) -> list[Check]:
    """Payers whose plans a reconcile or a prune stopped before recomputing
    (``clerksync.store.owed``), and stored payers whose marker a stopped writer never read
    (``rollups.stored_waiting``): wrong until the next reconcile, which recomputes them first."""
    from clerksync.store import rollups
    from clerksync.store.owed import STALE_AFTER, parents_named, stopped

    payers = {(p, i) for r in stopped(store) for p, ids in parents_named(r).items() for i in ids}
    waiting = rollups.stored_waiting(store, before=utcnow() - STALE_AFTER)
    payers |= {(p, i) for p, ids in waiting.items() for i in ids}
    if not payers:
        return []
    return [
        Check(
            "plans owed",
            "warn",
            f"a job stopped before recomputing the plans of {len(payers)} "
            f"payer{'' if len(payers) == 1 else 's'} (their plan fields may be stale)",
            "run reconcile: it recomputes them before anything else",
            ("clerksync reconcile",),
        )
    ]


def check_unique_indexes(store: Store, indexes: list[Any]) -> list[Check]:
    """The app's unique indexes that can refuse a Clerk user: a failure when a document holds
    the value a Clerk user without that field stores (the next such user is refused), a
    warning while none does (the second such user will be)."""
    schema, users = store.schema, store.schema.users
    name = store.users.name
    sources = {f.name: f for f in users.fields}
    checks = []
    for index in indexes:
        keys = list(dict(index["key"]))
        if not index.get("unique") or keys in (["_id"], [users.clerk_id]):
            continue
        reasons, held = [], 0
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
                if len(keys) == 1:
                    held += store.users.count_documents({key: empty}, limit=1)
            if mapped.source in ("username_or_fallback", "full_name"):
                reasons.append(f"{key} is computed and two Clerk users can share it")
        if not reasons:
            continue
        field = keys[0]
        empty = sources[field].default if field in sources else None
        refused = (
            f"; a document holds {field}={'null' if empty is None else repr(empty)} already, "
            "so the next such user is refused"
            if held
            else ""
        )
        declared = schema.name in ("nextjs", "fastapi")
        how = (
            where_declared(schema, field) + ", then drop the old index"
            if declared
            else "replace it with one that skips missing values"
        )
        checks.append(
            Check(
                f"unique index {index['name']}",
                "fail" if held else "warn",
                f"{name}({', '.join(keys)}) can refuse Clerk users: "
                + "; ".join(reasons)
                + refused
                + " (such deliveries fail with 503 naming it, and Svix retries)",
                f"make it partial so it skips missing values: {how}; then replay what it "
                "refused (Clerk keeps usernames and emails unique among its users, so "
                "dropping it is safe too)",
                (*partial_index_fix(schema, name, str(index["name"]), field), REPLAY),
            )
        )
    return checks


def check_duplicates(store: Store, app_made: dict[str, list[str]], has_key: bool) -> list[Check]:
    """App documents (no Clerk user id) whose email a linked user's document has: two
    documents for one person (the receiver created one instead of adopting the app's)."""
    from clerksync.kinds.user import CLERK_USER_ID

    users, name = store.schema.users, store.users.name
    if not users.email or not app_made:
        return []
    pairs: list[tuple[str, str, str]] = []  # (email, app's _id, linked _id)
    emails = sorted(app_made)
    for start in range(0, len(emails), 500):
        chunk = emails[start : start + 500]
        linked = store.users.find(
            {users.email: {"$in": chunk}, users.clerk_id: {"$regex": CLERK_USER_ID.pattern}},
            {users.email: 1},
        )
        for doc in linked:
            address = str(doc.get(users.email) or "").lower()
            for app_id in app_made.get(address, [])[:1]:
                pairs.append((address, app_id, str(doc["_id"])))
    if not pairs:
        return []
    shown = "; ".join(f"{email}: {a} (the app's) and {b} (linked)" for email, a, b in pairs[:5])
    if has_key:
        hint = (
            "keep the app's document: delete the linked copy (if nothing of your app refers to "
            "its _id yet), and reconcile adopts the app's document (your fields kept, its id "
            "written to Clerk)"
        )
        commands = [f'db.{name}.deleteOne({{ _id: ObjectId("{b}") }})' for _, _, b in pairs[:5]]
        commands.append("clerksync reconcile")
    else:
        hint = (
            "keep the linked document: copy what your app keeps on its own document onto the "
            "linked one, then delete the app's"
        )
        commands = [f'db.{name}.deleteOne({{ _id: ObjectId("{a}") }})' for _, a, _ in pairs[:5]]
    return [
        Check(
            "duplicate users",
            "fail",
            f"{len(pairs)} app-created document{'' if len(pairs) == 1 else 's'} duplicate a "
            f"linked user by email, two documents for one person: {shown}",
            hint + ("" if len(pairs) <= 5 else "; rerun doctor for the next five"),
            tuple(commands),
        )
    ]


def check_adoption(store: Store, has_key: bool) -> list[Check]:
    """The documents the app created (no Clerk user id): duplicates of linked users, several
    with one email (none adopted), capitals (never matched), and whether the receiver can
    look them up (an index on the email field)."""
    from clerksync.kinds.user import CLERK_USER_ID
    from clerksync.store.users import UserHooks

    schema, users, name = store.schema, store.schema.users, store.users.name
    if not users.email:
        return []
    found = store.users.find(
        {users.clerk_id: {"$not": {"$regex": CLERK_USER_ID.pattern}}, users.email: {"$gt": ""}},
        {users.email: 1},
    ).limit(10_000)
    by_email: dict[str, list[str]] = {}
    capitals: list[str] = []
    for doc in found:
        address = doc.get(users.email)
        if isinstance(address, str):
            by_email.setdefault(address.lower(), []).append(str(doc["_id"]))
            if address != address.lower():
                capitals.append(str(doc["_id"]))
    checks = check_duplicates(store, by_email, has_key)
    conflicts = [ids for ids in by_email.values() if len(ids) > 1]
    if conflicts:
        listed = "; ".join(", ".join(ids) for ids in conflicts[:5])
        extras = [i for ids in conflicts[:5] for i in ids[1:]]
        checks.append(
            Check(
                "adoption",
                "warn",
                f"{len(conflicts)} emails are held by several app-created documents "
                f"(Mongo ids: {listed}): a Clerk user with that email adopts none of them",
                "keep one document per email: copy what you keep onto the first, then delete "
                "the others",
                tuple(f'db.{name}.deleteOne({{ _id: ObjectId("{i}") }})' for i in extras),
            )
        )
    if capitals:
        ids = ", ".join(f'ObjectId("{i}")' for i in capitals[:100])
        checks.append(
            Check(
                "adoption capitals",
                "warn",
                f"{len(capitals)} app-created documents keep their email with capitals: "
                "adoption compares lower-case addresses (as Clerk keeps them)",
                f"lower-case {name}.{users.email} in those documents",
                (
                    f"db.{name}.updateMany({{ _id: {{ $in: [{ids}] }} }}, "
                    f'[{{ $set: {{ {users.email}: {{ $toLower: "${users.email}" }} }} }}])',
                ),
            )
        )
    waiting = sum(len(ids) for ids in by_email.values())
    if waiting and not UserHooks(store).email_indexed():
        declared = schema.name in ("nextjs", "fastapi")
        checks.append(
            Check(
                "adoption index",
                "warn",
                f"{waiting} app-created documents have an email and no Clerk user yet, and "
                f"{name}.{users.email} has no index: every signup with a verified email (the "
                f"receiver, ensure_user) scans the collection, {store.estimated_count()} "
                "documents, to look for one",
                (
                    where_declared(schema, users.email, replacing=False)
                    if declared
                    else f"index {name}.{users.email}"
                ),
                tuple(email_index_fix(schema, name, users.email)),
            )
        )
    return checks
