"""From a subfolder of a project, commands read the project's ``.env.local``/``.env`` (found
where its ``.clerksync`` is found), and ``doctor`` says which files it read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clerksync.settings import load_settings
from clerksync.store.database import Store


def project(root: Path, env: dict[str, str]) -> Path:
    """A project (``package.json`` marks its root) with ``.env.local`` there, and ``src/``."""
    root.mkdir(exist_ok=True)
    (root / "package.json").write_text("{}")
    (root / ".env.local").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    (root / "src" / "app").mkdir(parents=True)
    return root / "src" / "app"


def test_settings_from_a_subfolder_are_the_project_roots(tmp_path: Path) -> None:
    sub = project(tmp_path, {"MONGODB_DB": "from_root"})
    settings = load_settings(environ={}, cwd=sub)
    assert settings.mongodb_db == "from_root"
    assert settings.env_files == (tmp_path / ".env.local",)


def test_a_subfolders_own_env_file_is_the_nearer_one(tmp_path: Path) -> None:
    sub = project(tmp_path, {"MONGODB_DB": "from_root"})
    (sub / ".env").write_text("MONGODB_DB=from_sub\n")
    assert load_settings(environ={}, cwd=sub).mongodb_db == "from_sub"


def test_no_search_outside_a_project(tmp_path: Path) -> None:
    (tmp_path / ".env.local").write_text("MONGODB_DB=stray\n")
    (tmp_path / "a").mkdir()
    assert load_settings(environ={}, cwd=tmp_path / "a").mongodb_db is None


def test_a_command_from_src_uses_the_projects_database_and_doctor_names_the_file(
    store: Store, cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_env: dict[str, str]
) -> None:
    from tests.support.writes import seed_user

    seed_user(store, "user_root", email="root@example.com")
    for name in db_env:
        monkeypatch.delenv(name)
    sub = project(tmp_path / "proj", db_env)
    monkeypatch.chdir(sub)
    listed = cli("users", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert [u["email"] for u in json.loads(listed.stdout)] == ["root@example.com"]
    assert "embedded store" not in listed.stderr
    checks = {c["name"]: c for c in json.loads(cli("doctor", "--json").stdout)["checks"]}
    assert checks["env files"]["status"] == "pass"
    assert checks["env files"]["detail"] == f"read {tmp_path / 'proj' / '.env.local'}"


def test_a_mapping_file_named_in_the_roots_env_file_is_read_from_the_root(tmp_path: Path) -> None:
    from tests.conftest import SCHEMA_FILE

    (tmp_path / "members.toml").write_text(SCHEMA_FILE.read_text())
    sub = project(tmp_path, {"CLERKSYNC_SCHEMA": "members.toml"})
    assert load_settings(environ={}, cwd=sub).schema.users.clerk_id == "clerk_uid"
