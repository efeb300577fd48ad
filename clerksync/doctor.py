"""``clerksync doctor``: check every link of the chain and say what to fix.

Each check returns a ``Check`` with a status and, when it is not a pass, one
concrete fix. Network checks run in parallel with short timeouts so the whole
run stays well under 15 s even when nothing answers. Nothing here prints a
secret: keys appear masked.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from clerksync.config import DEFAULT_API_URL, WHERE, Settings, instance_kind, mask
from clerksync.errors import ClerkApiError, ClerkSyncError

if TYPE_CHECKING:
    from clerksync.store import UserStore

Status = Literal["pass", "info", "warn", "fail"]
FORWARD_HINT = (
    "Clerk cannot post to this machine: run `clerk webhooks listen --forward-to "
    "http://127.0.0.1:8000/api/webhooks/clerk` (Clerk's CLI), add the URL it prints as an "
    "endpoint in Dashboard → Webhooks, and set WEBHOOK_SECRET to that endpoint's secret; "
    "or set NEXT_PUBLIC_URL to your deployed app"
)


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    hint: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def ok(name: str, detail: str) -> Check:
    return Check(name, "pass", detail)


def info(name: str, detail: str, hint: str = "") -> Check:
    """Worth knowing, not a problem: a local demo without Clerk keys is a working setup."""
    return Check(name, "info", detail, hint)


def unreachable_from_clerk(url: str) -> str | None:
    """Why Clerk's servers cannot post to ``url`` (loopback, private, link-local), or None."""
    import ipaddress
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal", ".lan")):
        return f"{host} is this machine or a local network name"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_loopback:
        return f"{host} is this machine (loopback)"
    if address.is_private or address.is_link_local or address.is_unspecified:
        return f"{host} is a private address"
    return None


def dev_receiver(settings: Settings) -> dict[str, Any] | None:
    """The ``serve`` running on this state dir (``serve.json``), with its dev secret if any."""
    from clerksync.send import running_server

    return running_server(settings.state_dir)


def effective_secret(settings: Settings) -> str | None:
    """WEBHOOK_SECRET, else the secret of a running ``serve --dev`` (as ``send`` uses it)."""
    if settings.webhook_secret:
        return settings.webhook_secret
    running = dev_receiver(settings)
    return running["secret"] if running and running["dev"] else None


def check_env_files(settings: Settings) -> list[Check]:
    checks = []
    if settings.env_files:
        checks.append(ok("env files", "read " + ", ".join(str(p) for p in settings.env_files)))
    else:
        checks.append(
            Check(
                "env files",
                "info" if settings.uses_embedded_store else "warn",
                f"no .env.local or .env in {Path.cwd()}; using the process environment only",
                "put your settings in .env.local (see .env.example), or pass --env-file",
            )
        )
    for found, meant in settings.misnamed:
        checks.append(
            Check(
                found,
                "warn",
                f"is set, but clerksync does not read it (and {meant} is unset)",
                f"did you mean {meant}? Rename it in your env file",
            )
        )
    return checks


def check_variables(settings: Settings) -> list[Check]:
    problems = dict(settings.problems())
    checks: list[Check] = []
    local = settings.uses_embedded_store  # a local demo: unset keys are expected there
    running = dev_receiver(settings)
    from clerksync.send import read_dev_secret

    kept_secret = read_dev_secret(settings.state_dir)

    def var(name: str, shown: str, unset: Check | None) -> None:
        value = settings.value(name)
        if not value:
            if unset is not None:
                checks.append(unset)
        elif name in problems:
            checks.append(
                Check(
                    name,
                    "fail",
                    f"{shown} {problems[name]}",
                    f"fix it in .env.local — {WHERE[name]}",
                )
            )
        else:
            checks.append(ok(name, shown))

    var(
        "MONGODB_URL",
        "set",
        info(
            "MONGODB_URL",
            f"unset: using the embedded store in {settings.state_dir}/ (local use only)",
            "set MONGODB_URL in .env.local to your app's database",
        ),
    )
    var(
        "CLERK_SECRET_KEY",
        mask(settings.clerk_secret_key),
        Check(
            "CLERK_SECRET_KEY",
            "info" if local else "warn",
            "unset: users are stored, write-backs wait",
            f"set CLERK_SECRET_KEY in .env.local — {WHERE['CLERK_SECRET_KEY']}",
        ),
    )
    var(
        "WEBHOOK_SECRET",
        mask(settings.webhook_secret),
        (
            ok(
                "WEBHOOK_SECRET",
                f"unset; the running `serve --dev` at {running['url']} uses its local secret "
                f"{mask(running['secret'])}",
            )
            if running and running["dev"] and running["secret"]
            else info(
                "WEBHOOK_SECRET",
                f"unset; `clerksync serve --dev` uses this machine's local secret "
                f"{mask(kept_secret)} (not running now)",
                "start the demo with `clerksync serve --dev`; for Clerk's own deliveries, set "
                f"WEBHOOK_SECRET — {WHERE['WEBHOOK_SECRET']}",
            )
            if local and kept_secret
            else Check(
                "WEBHOOK_SECRET",
                "fail",
                "unset: no delivery can be verified",
                f"set WEBHOOK_SECRET in .env.local — copy it from {WHERE['WEBHOOK_SECRET']} "
                "(or run `clerksync serve --dev` for a local secret)",
            )
        ),
    )
    var(
        "NEXT_PUBLIC_URL",
        settings.public_url or "",
        Check(
            "NEXT_PUBLIC_URL",
            "info" if local else "warn",
            "unset: cannot derive the webhook endpoint Clerk must post to",
            "set NEXT_PUBLIC_URL to your app's public base URL; to receive Clerk's deliveries "
            "on this machine, see `clerk webhooks listen` in the README",
        ),
    )
    if settings.public_url and "NEXT_PUBLIC_URL" not in problems:
        why = unreachable_from_clerk(settings.public_url)
        if why:
            checks[-1] = Check(
                "NEXT_PUBLIC_URL", "warn", f"{settings.public_url}: {why}", FORWARD_HINT
            )
    var("NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY", mask(settings.publishable_key), None)
    var("MONGODB_DB", settings.mongodb_db or "", None)
    if settings.clerk_api_url != DEFAULT_API_URL:
        var("CLERK_API_URL", settings.clerk_api_url, None)
    if settings.publishable_key and "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY" not in problems:
        pk = instance_kind(settings.publishable_key)
        sk = instance_kind(settings.clerk_secret_key)
        if sk and pk != sk:
            checks.append(
                Check(
                    "key pair",
                    "fail",
                    f"publishable key is pk_{pk}_, secret key is sk_{sk}_: different instances",
                    "copy both keys from the same instance: Dashboard → Configure → API keys",
                )
            )
        else:
            checks.append(
                ok("key pair", f"{mask(settings.publishable_key)} matches the secret key")
            )
    return checks


def check_mongodb(settings: Settings) -> tuple[list[Check], int | None, int | None]:
    """Reachability, a write round trip, the unique index; returns (checks, users, pending)."""
    from clerksync.mongo import describe_mongo_error
    from clerksync.store import connect

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
        users, pending = store.count(), store.pending_write_backs()
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


def check_stopped_write_backs(store: UserStore) -> list[Check]:
    """Write-backs that stopped (parked, or dropped because Clerk did not know the user): no
    longer pending, yet Clerk does not hold what MongoDB says."""
    queue = store.queue
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


def check_app_collection(store: UserStore) -> list[Check]:
    """The app's collection under the schema: clerksync's indexes, the app's unique indexes
    that can refuse Clerk users, the mapping against sampled documents, adoption conflicts."""
    from clerksync.schema import CLERK_USER_ID
    from clerksync.store import DUE_INDEX

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
        if by_email and not store.email_indexed():
            checks.append(
                Check(
                    "adoption",
                    "warn",
                    f"{len(by_email)} app-created documents wait to be adopted, and "
                    f"{name}.{users.email} has no index: the receiver does not look them up "
                    "(a scan per signup); reconcile adopts them",
                    f"create an index on {name}.{users.email}, or run `clerksync reconcile`",
                )
            )
    return checks


def check_schema_sample(store: UserStore, sample: int = 200) -> Check:
    """The mapping against documents clerksync wrote: fields missing or of another type."""
    from clerksync import bookkeeping as bk
    from clerksync.schema import PRESETS

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
        return ok("schema", f"{schema}: {len(docs)} sampled documents match the mapping")
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


def check_clerk(settings: Settings) -> tuple[list[Check], int | None]:
    if not settings.clerk_secret_key or settings.problems("CLERK_SECRET_KEY", "CLERK_API_URL"):
        return [], None
    from clerksync.clerk import ClerkGateway

    gateway = ClerkGateway(
        settings.clerk_secret_key, api_url=settings.clerk_api_url, timeout_ms=5000
    )
    try:
        total = gateway.count_users()
    except ClerkSyncError as exc:
        if not isinstance(exc, ClerkApiError):
            exc = ClerkApiError(str(exc))
        hint = (
            "copy a current secret key from Dashboard → Configure → API keys"
            if exc.status in (401, 403)
            else "check CLERK_API_URL and your network"
        )
        return [
            Check("Clerk API", "fail", f"{exc} (key {mask(settings.clerk_secret_key)})", hint)
        ], None
    return [
        ok("Clerk API", f"key {mask(settings.clerk_secret_key)} accepted; {total} Clerk users")
    ], total


def probe_receiver(settings: Settings, url: str, secret: str | None = None) -> Check | None:
    """Unsigned must be refused (400), signed-and-harmless accepted (2xx). None: nobody answers.

    Both requests carry a svix-id starting with ``PROBE_PREFIX``: the delivery
    log keeps them apart, so a doctor run never counts as a delivery.
    """
    import secrets as random

    import httpx

    from clerksync.config import check_webhook_secret
    from clerksync.events import PROBE_PREFIX
    from clerksync.webhooks import sign

    body = json.dumps({"type": "clerksync.doctor", "object": "event", "data": {}}).encode()
    name = f"receiver {url}"
    probe_id = PROBE_PREFIX + random.token_hex(8)
    unsigned_headers = {"content-type": "application/json", "svix-id": probe_id + "_unsigned"}
    try:
        with httpx.Client(timeout=3.0) as http:
            unsigned = http.post(url, content=body, headers=unsigned_headers)
            if unsigned.status_code == 404:
                return Check(
                    name,
                    "fail",
                    "404: nothing is mounted at this path",
                    "mount the receiver at /api/webhooks/clerk (or run `clerksync serve`)",
                )
            if unsigned.status_code in (401, 403):
                return Check(
                    name,
                    "fail",
                    f"{unsigned.status_code}: the route is behind auth",
                    "make /api/webhooks/clerk public in your auth middleware "
                    "(Clerk: add it to the public routes)",
                )
            if unsigned.is_success:
                return Check(
                    name,
                    "fail",
                    "accepted an unsigned request",
                    "verify the svix signature before acting on a delivery",
                )
            if not secret or check_webhook_secret(secret):
                # no usable secret to sign with: the WEBHOOK_SECRET check says why
                return ok(name, f"refused an unsigned request ({unsigned.status_code})")
            signed = http.post(url, content=body, headers=sign(secret, body, msg_id=probe_id))
    except (httpx.HTTPError, httpx.InvalidURL, ValueError):
        return None
    if signed.is_success:
        return ok(name, "refuses unsigned requests, accepts signed ones")
    return Check(
        name,
        "fail",
        f"refused a correctly signed request ({signed.status_code})",
        "WEBHOOK_SECRET differs from the endpoint's secret, or the body is parsed "
        "before verification (verify the raw bytes)",
    )


def check_webhook(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    targets = []
    running = dev_receiver(settings)
    secret = effective_secret(settings)
    if settings.problems("NEXT_PUBLIC_URL"):
        settings = _without_public_url(settings)
    if settings.webhook_url and not unreachable_from_clerk(settings.webhook_url):
        checks.append(
            ok(
                "webhook endpoint",
                f"Clerk must post to {settings.webhook_url} "
                "(Dashboard → Webhooks; events user.created, user.updated, user.deleted)",
            )
        )
    if settings.webhook_url:
        targets.append(settings.webhook_url)
    if running:  # where the local receiver is; never a guess at a port (another app's, maybe)
        targets.append(running["url"])
    if not targets:
        return checks + [
            Check(
                "receiver",
                "warn",
                "no receiver to probe: no `clerksync serve` is running here "
                "(none recorded in serve.json) and NEXT_PUBLIC_URL is unset",
                "start one with `clerksync serve`, or set NEXT_PUBLIC_URL to your app",
            )
        ]
    answered = False
    for url in dict.fromkeys(targets):
        # a running `serve --dev` verifies with its own secret, whatever WEBHOOK_SECRET says
        signing = (
            running["secret"] if running and running["dev"] and url == running["url"] else secret
        )
        result = probe_receiver(settings, url, signing)
        if result is not None:
            answered = True
            checks.append(result)
    if not answered:
        checks.append(
            Check(
                "receiver",
                "warn",
                "no receiver answered at " + ", ".join(targets),
                "start one with `clerksync serve`, or deploy your app",
            )
        )
    return checks


def check_organization_counts(settings: Settings) -> Check | None:
    """Clerk's organization count against MongoDB's; None when either side cannot answer
    (the MongoDB and Clerk API checks report why). No organizations feature: a note. An
    error nobody foresaw is a failing check, never a traceback."""
    try:
        return _organization_counts(settings)
    except Exception as exc:
        return Check(
            "organization counts", "fail", f"could not check: {exc.__class__.__name__}", ""
        )


def _organization_counts(settings: Settings) -> Check | None:
    if not settings.clerk_secret_key or "CLERK_SECRET_KEY" in dict(settings.problems()):
        return None
    from clerksync.clerk import ClerkGateway, OrganizationsDisabled
    from clerksync.store import connect

    gateway = ClerkGateway(
        settings.clerk_secret_key, api_url=settings.clerk_api_url, timeout_ms=5000
    )
    try:
        clerk_orgs = gateway.count_organizations()
    except OrganizationsDisabled:
        return ok("organization counts", "organizations are not enabled on this Clerk instance")
    except ClerkApiError:
        return None
    try:
        store = connect(settings)
    except ClerkSyncError:
        return None
    try:
        mongo_orgs = store.orgs.organizations.count_documents({})
    except Exception:  # pymongo errors: the MongoDB check reports them
        return None
    finally:
        store.close()
    detail = f"Clerk {clerk_orgs}, MongoDB {mongo_orgs}"
    if clerk_orgs == mongo_orgs:
        return ok("organization counts", detail)
    return Check(
        "organization counts", "warn", detail, "run `clerksync reconcile` to bring MongoDB in line"
    )


def _without_public_url(settings: Settings) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, public_url=None)


def _guarded(group: str, run: Any, settings: Settings) -> Any:
    """Run a group of checks; an error nobody foresaw becomes a failing check, never a traceback."""
    try:
        return run(settings)
    except Exception as exc:
        failed = [Check(group, "fail", f"could not check: {exc.__class__.__name__}", "")]
        return (
            (failed, None, None)
            if group == "MongoDB"
            else ((failed, None) if group == "Clerk API" else failed)
        )


def run_doctor(settings: Settings, *, probes: bool = True) -> list[Check]:
    """All checks, in a stable order. Network groups run in parallel."""
    checks = check_env_files(settings) + check_variables(settings)
    with ThreadPoolExecutor(max_workers=4) as pool:
        mongo = pool.submit(_guarded, "MongoDB", check_mongodb, settings)
        clerk = pool.submit(_guarded, "Clerk API", check_clerk, settings)
        orgs = pool.submit(check_organization_counts, settings)
        hooks = pool.submit(_guarded, "receiver", check_webhook, settings) if probes else None
        mongo_checks, mongo_users, pending = mongo.result()
        clerk_checks, clerk_users = clerk.result()
        webhook_checks = hooks.result() if hooks else []
    checks += mongo_checks + clerk_checks
    if mongo_users is not None and clerk_users is not None:
        if mongo_users == clerk_users:
            checks.append(ok("user counts", f"Clerk {clerk_users}, MongoDB {mongo_users}"))
        else:
            checks.append(
                Check(
                    "user counts",
                    "warn",
                    f"Clerk {clerk_users}, MongoDB {mongo_users}",
                    "run `clerksync reconcile` to bring MongoDB in line",
                )
            )
    org_counts = orgs.result()
    if org_counts is not None:
        checks.append(org_counts)
    if pending:
        waiting = "" if settings.clerk_secret_key else " (CLERK_SECRET_KEY is unset)"
        checks.append(
            Check(
                "write-backs",
                "info"
                if settings.uses_embedded_store and not settings.clerk_secret_key
                else "warn",
                f"{pending} metadata write-back{'' if pending == 1 else 's'} pending{waiting}",
                "they run while `clerksync serve` runs with CLERK_SECRET_KEY set; "
                "`clerksync sync-metadata` finishes them now",
            )
        )
    elif pending == 0:
        checks.append(ok("write-backs", "none pending"))
    return checks + webhook_checks


def doctor_ok(checks: list[Check]) -> bool:
    return all(c.status != "fail" for c in checks)
