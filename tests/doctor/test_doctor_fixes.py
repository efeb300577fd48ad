"""Every fix doctor prints, followed as written, makes its check pass: break the chain, run
doctor (exit 1 when users are missing or duplicated), apply the fix's commands exactly as
printed (``clerksync …`` through the CLI, ``db.…`` through the Node driver, a model's line
into the app's model, which then starts again), run doctor again."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from clerksync.devtools.payloads import clerk_user, event
from clerksync.settings import load_settings
from clerksync.store.database import Store
from tests.conftest import WEBHOOK_SECRET
from tests.support.apps import BEANIE_MODELS, BeanieApp, MongooseApp
from tests.support.fakeclerk import FakeClerk
from tests.support.mongoshell import run_shell_lines
from tests.support.receiver import RunningReceiver, post
from tests.support.writes import seed_user

#: the guide's model as the guide has it: email and username unique everywhere
GUIDE_MODEL = """import mongoose from "mongoose";

const UserSchema = new mongoose.Schema(
  {
    clerkId: { type: String, required: true, unique: true },
    email: { type: String, unique: true },
    firstName: { type: String },
    lastName: { type: String },
    username: { type: String, unique: true },
    profilePicture: { type: String },
    isAdmin: { type: Boolean, default: false },
  },
  { timestamps: true },
);

export default mongoose.models.User || mongoose.model("User", UserSchema);
"""


def doctor(cli: Any) -> tuple[int, dict[str, dict]]:
    result = cli("doctor", "--json")
    assert "Traceback" not in result.stdout + result.stderr
    return result.exit_code, {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def follow(
    check: dict, cli: Any, db_env: dict[str, str], app: MongooseApp | BeanieApp | None = None
) -> None:
    """Apply ``check``'s commands as printed, in order: a model line goes into the app's
    model (in place of the field's own ``unique: true``), shell lines run, the app starts
    again (its ORM builds what the model declares), then the clerksync commands."""
    assert check["commands"], check
    later = []
    for line in check["commands"]:
        if line.startswith("clerksync "):
            later.append(line)
        elif line.startswith("echo "):
            subprocess.run(line, shell=True, check=True)  # in the working folder, as typed
        elif line.startswith("db."):
            run_shell_lines(db_env["MONGODB_URL"], db_env["MONGODB_DB"], [line])
        elif line.startswith("IndexModel("):
            assert isinstance(app, BeanieApp), line
            field = line.split('[("', 1)[1].split('"', 1)[0]
            model = app.models.read_text()
            model = model.replace(
                f"{field}: Annotated[Optional[str], Indexed(unique=True)]",
                f"{field}: Optional[str]",
            )
            model = model.replace("indexes = [", f"indexes = [\n            {line},", 1)
            app.models.write_text(model)
        elif line.startswith("UserSchema.index("):
            assert isinstance(app, MongooseApp), line
            field = line.split("{ ", 1)[1].split(":", 1)[0]
            model = app.model_file.read_text()
            model = model.replace(f"{field}: {{ type: String, unique: true }}", f"{field}: String")
            model = model.replace("export default", f"{line};\n\nexport default")
            app.model_file.write_text(model)
        else:
            raise AssertionError(f"a fix line the test cannot follow: {line}")
    if app is not None:
        app.start()
    for line in later:
        result = cli(*shlex.split(line)[1:])
        assert result.exit_code == 0, (line, result.stdout, result.stderr)


@pytest.fixture
def receiver_on(store: Store, webhook_secret: str) -> Any:
    started: list[RunningReceiver] = []

    def start() -> RunningReceiver:
        started.append(RunningReceiver(load_settings()).start())
        return started[-1]

    yield start
    for running in started:
        running.stop()


def signup(receiver: RunningReceiver, user_id: str, msg_id: str, **fields: Any) -> int:
    payload = event("user.created", clerk_user(user_id=user_id, **fields))
    status = post(receiver.url, WEBHOOK_SECRET, payload, msg_id=msg_id).status_code
    receiver.receiver.log.flush_now()
    return status


def test_the_guides_unique_username_index(
    store: Store, cli: Any, db_env: dict[str, str], receiver_on: Any, tmp_path: Path
) -> None:
    app = MongooseApp(tmp_path / "app", db_env["MONGODB_URL"], db_env["MONGODB_DB"], GUIDE_MODEL)
    store.users.drop_indexes()
    app.start()  # the guide's app built its indexes
    receiver = receiver_on()
    assert signup(receiver, "user_a", "msg_a", email="a@x.com") == 200
    assert signup(receiver, "user_b", "msg_b", email="b@x.com") == 503  # a second null username
    code, checks = doctor(cli)
    assert code == 1
    assert checks["unique index username_1"]["status"] == "fail"
    assert checks["failed deliveries"]["status"] == "fail"
    assert "msg_b" in checks["failed deliveries"]["detail"]
    follow(checks["unique index username_1"], cli, db_env, app)
    code, checks = doctor(cli)
    assert "unique index username_1" not in checks and "failed deliveries" not in checks
    assert code == 0, [c for c in checks.values() if c["status"] == "fail"]
    assert store.users.count_documents({"clerkId": "user_b"}) == 1
    assert app.start().users == 2  # and the app starts again as it is


def report_model(folder: Path) -> Path:
    """The report's Beanie model as the report has it: its email unique everywhere
    (``Indexed(unique=True)``), which a second Clerk user without an email meets."""
    text = BEANIE_MODELS.read_text().replace(
        "from beanie import Document",
        "from typing import Annotated\n\nfrom beanie import Document, Indexed",
    )
    text = text.replace(
        "email: Optional[str] = None",
        "email: Annotated[Optional[str], Indexed(unique=True)] = None",
    )
    start = text.index("            # unique where present")
    end = text.index("            # not unique: the username")
    path = folder / "models.py"
    path.write_text(text[:start] + text[end:])
    return path


@pytest.mark.parametrize("schema", ["fastapi"], indirect=True)
def test_the_reports_unique_email_index(
    store: Store, cli: Any, db_env: dict[str, str], tmp_path: Path, webhook_secret: str
) -> None:
    app = BeanieApp(db_env["MONGODB_URL"], db_env["MONGODB_DB"], report_model(tmp_path))
    store.users.drop_indexes()
    app.start()  # init_beanie built the report's indexes
    seed_user(store, "user_phone", emails=[])  # a phone sign-up: email null
    code, checks = doctor(cli)
    assert code == 1 and checks["unique index email_1"]["status"] == "fail"
    assert checks["unique index email_1"]["commands"][0].startswith("IndexModel(")
    follow(checks["unique index email_1"], cli, db_env, app)
    code, checks = doctor(cli)
    assert "unique index email_1" not in checks
    assert code == 0, [c for c in checks.values() if c["status"] == "fail"]
    seed_user(store, "user_phone2", emails=[])  # a second one is stored now
    started = app.start()  # and the app starts again as it is, reading both
    assert started.users == 2 and started.invalid == []


@pytest.mark.parametrize("schema", ["custom"], indirect=True)
def test_a_unique_index_under_a_mapping_file(
    store: Store, cli: Any, db_env: dict[str, str], schema: Any, webhook_secret: str
) -> None:
    users = schema.users
    field = users.email
    store.users.create_index(field, unique=True, name=f"{field}_1")
    seed_user(store, "user_noemail", emails=[])
    code, checks = doctor(cli)
    assert code == 1 and checks[f"unique index {field}_1"]["status"] == "fail"
    follow(checks[f"unique index {field}_1"], cli, db_env)
    code, checks = doctor(cli)
    assert f"unique index {field}_1" not in checks and code == 0


def test_failed_deliveries_whose_cause_is_gone(
    store: Store, cli: Any, db_env: dict[str, str], receiver_on: Any, webhook_secret: str
) -> None:
    store.users.create_index("username", unique=True, name="username_1")
    receiver = receiver_on()
    assert signup(receiver, "user_a", "msg_a") == 200
    assert signup(receiver, "user_b", "msg_b", email="b@x.com") == 503
    store.users.drop_index("username_1")  # the operator dropped it, and forgot the replay
    code, checks = doctor(cli)
    assert code == 1 and checks["failed deliveries"]["status"] == "fail"
    follow(checks["failed deliveries"], cli, db_env)
    code, checks = doctor(cli)
    assert "failed deliveries" not in checks and code == 0


@pytest.mark.parametrize("key", ["with a Clerk key", "without"])
def test_app_documents_duplicated_by_the_receiver(
    store: Store,
    cli: Any,
    db_env: dict[str, str],
    receiver_on: Any,
    fake_clerk: FakeClerk,
    monkeypatch: pytest.MonkeyPatch,
    key: str,
) -> None:
    store.users.insert_one({"email": "seeded@app.com", "isAdmin": True})  # the app's admin
    fake_clerk.add_user(user_id="user_seeded", email="seeded@app.com")
    if key == "without":
        monkeypatch.delenv("CLERK_SECRET_KEY")
    receiver = receiver_on()
    # signed up before the address was verified: no adoption, a document of its own
    data = clerk_user(user_id="user_seeded", email="seeded@app.com")
    data["email_addresses"][0]["verification"]["status"] = "unverified"
    assert post(receiver.url, WEBHOOK_SECRET, event("user.created", data)).status_code == 200
    receiver.receiver.log.flush_now()
    assert store.users.count_documents({"email": "seeded@app.com"}) == 2
    code, checks = doctor(cli)
    assert code == 1 and checks["duplicate users"]["status"] == "fail"
    follow(checks["duplicate users"], cli, db_env)
    code, checks = doctor(cli)
    assert "duplicate users" not in checks
    assert [c for c in checks.values() if c["status"] == "fail"] == []
    kept = list(store.users.find({"email": "seeded@app.com"}))
    assert len(kept) == 1 and kept[0]["clerkId"] == "user_seeded"
    if key != "without":
        assert kept[0]["isAdmin"] is True  # reconcile adopted the app's document


@pytest.mark.parametrize("schema", ["custom"], indirect=True)
def test_app_documents_the_receiver_cannot_look_up(
    store: Store, cli: Any, db_env: dict[str, str], schema: Any
) -> None:
    users = schema.users
    store.users.insert_one({users.email: "waiting@app.com"})
    code, checks = doctor(cli)
    assert checks["adoption index"]["status"] == "warn"
    follow(checks["adoption index"], cli, db_env)
    assert "adoption index" not in doctor(cli)[1]


def test_the_guides_app_documents_the_receiver_cannot_look_up(
    store: Store, cli: Any, db_env: dict[str, str], tmp_path: Path
) -> None:
    model = GUIDE_MODEL.replace("email: { type: String, unique: true }", "email: String")
    app = MongooseApp(tmp_path / "app", db_env["MONGODB_URL"], db_env["MONGODB_DB"], model)
    store.users.insert_one({"email": "waiting@app.com"})
    store.users.drop_indexes()
    app.start()
    checks = doctor(cli)[1]
    assert checks["adoption index"]["status"] == "warn"
    follow(checks["adoption index"], cli, db_env, app)
    assert "adoption index" not in doctor(cli)[1]


@pytest.mark.parametrize("schema", ["fastapi"], indirect=True)
def test_the_reports_app_documents_the_receiver_cannot_look_up(
    store: Store, cli: Any, db_env: dict[str, str], tmp_path: Path
) -> None:
    models = report_model(tmp_path)
    unindexed = "email: Annotated[Optional[str], Indexed(unique=True)] = None"
    models.write_text(models.read_text().replace(unindexed, "email: Optional[str] = None"))
    app = BeanieApp(db_env["MONGODB_URL"], db_env["MONGODB_DB"], models)
    store.users.drop_indexes()
    app.start()
    store.users.insert_one({"email": "waiting@app.com", "user_id": 1, "username": "w", "name": "W"})
    checks = doctor(cli)[1]
    assert checks["adoption index"]["status"] == "warn"
    follow(checks["adoption index"], cli, db_env, app)
    assert "adoption index" not in doctor(cli)[1]
    assert app.start().invalid == []


def test_several_app_documents_with_one_email(
    store: Store, cli: Any, db_env: dict[str, str]
) -> None:
    store.users.create_index("email", name="email_plain")
    store.users.insert_many([{"email": "twin@app.com"}, {"email": "twin@app.com"}])
    checks = doctor(cli)[1]
    assert checks["adoption"]["status"] == "warn"
    follow(checks["adoption"], cli, db_env)
    assert "adoption" not in doctor(cli)[1]


def test_app_documents_with_capitals(store: Store, cli: Any, db_env: dict[str, str]) -> None:
    store.users.create_index("email", name="email_plain")
    store.users.insert_one({"email": "Grace@App.com"})
    checks = doctor(cli)[1]
    assert checks["adoption capitals"]["status"] == "warn"
    follow(checks["adoption capitals"], cli, db_env)
    assert "adoption capitals" not in doctor(cli)[1]
    assert store.users.find_one({})["email"] == "grace@app.com"


def test_documents_sharing_a_clerk_id(
    store: Store, cli: Any, db_env: dict[str, str], webhook_secret: str
) -> None:
    store.users.drop_indexes()
    store.users.insert_many([{"clerkId": "user_twin"}, {"clerkId": "user_twin"}])
    code, checks = doctor(cli)
    assert code == 1 and checks["Clerk-id index"]["status"] == "fail"
    assert "user_twin (2 documents)" in checks["Clerk-id index"]["detail"]
    follow(checks["Clerk-id index"], cli, db_env)
    code, checks = doctor(cli)
    assert checks["Clerk-id index"]["status"] == "pass" and code == 0


def test_clerksyncs_indexes_without_a_clerk_key(
    store: Store, cli: Any, db_env: dict[str, str], webhook_secret: str
) -> None:
    seed_user(store, "user_one")
    store.deliveries.drop_indexes()
    code, checks = doctor(cli)
    assert code == 1 and checks["clerksync indexes"]["status"] == "fail"
    follow(checks["clerksync indexes"], cli, db_env)  # no Clerk key needed
    code, checks = doctor(cli)
    assert checks["clerksync indexes"]["status"] == "pass" and code == 0


@pytest.mark.parametrize("check", ["user counts", "write-backs", "organization counts"])
def test_counts_and_write_backs(
    store: Store, cli: Any, db_env: dict[str, str], fake_clerk: FakeClerk, check: str
) -> None:
    fake_clerk.add_user(user_id="user_clerk_only")
    fake_clerk.add_org(org_id="org_only")
    seed_user(store, "user_stored")
    fake_clerk.add_user(user_id="user_stored")
    checks = doctor(cli)[1]
    assert checks[check]["status"] == "warn"
    follow(checks[check], cli, db_env)
    assert doctor(cli)[1][check]["status"] == "pass"


def test_schema_of_another_preset(
    store: Store, cli: Any, db_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.delenv("CLERKSYNC_SCHEMA")  # unset: the default, nextjs
    store.users.insert_one({"clerk_user_id": "user_x", "user_id": 1})
    checks = doctor(cli)[1]
    assert checks["schema"]["status"] == "fail"
    follow(checks["schema"], cli, db_env)
    assert doctor(cli)[1]["schema"]["status"] == "pass"


def test_plans_a_stopped_reconcile_owed(
    store: Store,
    cli: Any,
    db_env: dict[str, str],
    fake_clerk: FakeClerk,
    fail_points: Any,
) -> None:
    """A reconcile stopped by the database between its items and their payer's plan (its
    record, found once it is old): doctor warns, and the reconcile it prints sets the plan."""
    from datetime import timedelta

    from clerksync.store.instance import meta_collection
    from clerksync.store.mongo import utcnow
    from clerksync.store.owed import RECORDS
    from tests.support.fakelists import clerk_subscription_item

    fake_clerk.add_user(user_id="user_a", created_at=10, updated_at=10)
    assert cli("reconcile", "--rate", "1000").exit_code == 0
    fake_clerk.add_object("subscription_items", clerk_subscription_item(user_id="user_a"))
    # clerksync's own client (appName "clerksync"): the test's client is not stopped
    fail_points("alwaysOn", {"failCommands": ["update"], "appName": "clerksync", "errorCode": 50})
    assert cli("reconcile", "--rate", "1000").exit_code != 0
    fail_points("off", {})
    meta_collection(store).update_many(RECORDS, {"$set": {"since": utcnow() - timedelta(hours=1)}})
    assert store.users.find_one({"clerkId": "user_a"}).get("plan") is None

    code, checks = doctor(cli)
    assert checks["plans owed"]["status"] == "warn" and "1 payer " in checks["plans owed"]["detail"]
    follow(checks["plans owed"], cli, db_env)
    code, checks = doctor(cli)
    assert "plans owed" not in checks
    assert store.users.find_one({"clerkId": "user_a"})["plan"] == "pro"


def test_a_payer_stored_beside_a_marker_no_one_read(
    store: Store, cli: Any, db_env: dict[str, str], fake_clerk: FakeClerk
) -> None:
    """An item came before its payer (a marker); the payer's document is there but the writer
    that inserted it stopped before reading the marker. Doctor says nothing while the marker
    is young, nor while the payer is (a writer that just inserted it may be about to read
    it); it warns once both are old, and the reconcile it prints gives the payer its plan
    and removes the marker."""
    from datetime import timedelta

    from bson import ObjectId

    from clerksync.store import rollups
    from clerksync.store.mongo import utcnow
    from tests.support.fakelists import clerk_subscription_item
    from tests.support.writes import deliver

    data = clerk_subscription_item(item_id="csub_item_a1", user_id="user_a", webhook=True)
    fake_clerk.add_object("subscription_items", data)
    fake_clerk.add_user(user_id="user_a", created_at=10, updated_at=10)
    deliver(store, {"type": "subscriptionItem.active", "object": "event", "data": data})
    marker = {"_id": rollups.WAITING + "user_a"}
    assert store.tombstones.find_one(marker) is not None
    store.users.insert_one({"clerkId": "user_a"})  # what the stopped writer's insert left

    assert "plans owed" not in doctor(cli)[1]
    store.tombstones.update_one(marker, {"$set": {"since": utcnow() - timedelta(hours=1)}})
    assert "plans owed" not in doctor(cli)[1]  # the payer was just inserted
    store.users.delete_one({"clerkId": "user_a"})
    an_hour_ago = ObjectId.from_datetime(utcnow() - timedelta(hours=1))
    store.users.insert_one({"_id": an_hour_ago, "clerkId": "user_a"})
    checks = doctor(cli)[1]
    assert checks["plans owed"]["status"] == "warn" and "1 payer " in checks["plans owed"]["detail"]
    follow(checks["plans owed"], cli, db_env)
    assert "plans owed" not in doctor(cli)[1]
    assert store.users.find_one({"clerkId": "user_a"})["plan"] == "pro"
    assert store.tombstones.find_one(marker) is None
