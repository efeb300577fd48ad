"""Configuration: precedence, aliases, validation and masking."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clerksync.errors import ConfigError
from clerksync.settings import KNOWN_NAMES, load_settings, mask
from tests.conftest import WEBHOOK_SECRET


def write(path: Path, text: str) -> None:
    path.write_text(text)


def test_process_env_wins_over_env_local_which_wins_over_env(tmp_path: Path) -> None:
    write(tmp_path / ".env", "MONGODB_DB=from_env\nNEXT_PUBLIC_URL=https://env.example\n")
    write(tmp_path / ".env.local", "MONGODB_DB=from_local\n")
    settings = load_settings(environ={}, cwd=tmp_path)
    assert settings.mongodb_db == "from_local"
    assert settings.public_url == "https://env.example"
    settings = load_settings(environ={"MONGODB_DB": "from_process"}, cwd=tmp_path)
    assert settings.mongodb_db == "from_process"
    assert settings.env_files == (tmp_path / ".env.local", tmp_path / ".env")


def test_aliases_are_read(tmp_path: Path) -> None:
    settings = load_settings(
        environ={"MONGODB_URI": "mongodb://h/x", "CLERK_WEBHOOK_SECRET": WEBHOOK_SECRET},
        cwd=tmp_path,
    )
    assert settings.mongodb_url == "mongodb://h/x"
    assert settings.webhook_secret == WEBHOOK_SECRET


def test_env_file_option_replaces_the_default_files(tmp_path: Path) -> None:
    write(tmp_path / ".env.local", "MONGODB_DB=local\n")
    other = tmp_path / "other.env"
    write(other, "MONGODB_DB=other\n")
    assert load_settings(env_file=other, environ={}, cwd=tmp_path).mongodb_db == "other"
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(env_file=tmp_path / "missing", environ={}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WEBHOOK_SECRET", "secret123", "must start with whsec_"),
        ("WEBHOOK_SECRET", "whsec_%%%notbase64", "not valid base64"),
        ("WEBHOOK_SECRET", "whsec_YWJj", "shorter than 16 bytes"),
        ("CLERK_SECRET_KEY", "pk_test_abcdefghijklmnop", "sk_test_ or sk_live_"),
        ("MONGODB_URL", "postgres://x", "mongodb://"),
        ("NEXT_PUBLIC_URL", "example.com", "http"),
    ],
)
def test_malformed_values_name_the_variable(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    settings = load_settings(environ={name: value}, cwd=tmp_path)
    with pytest.raises(ConfigError, match=message) as info:
        settings.require()
    assert name in str(info.value)
    assert value not in str(info.value) or name == "NEXT_PUBLIC_URL"


def test_missing_required_value_says_where_to_find_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET is not set.*Signing Secret"):
        load_settings(environ={}, cwd=tmp_path).require("WEBHOOK_SECRET")


def test_non_numeric_tuning_value_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CLERKSYNC_PAYLOAD_TTL_DAYS"):
        load_settings(environ={"CLERKSYNC_PAYLOAD_TTL_DAYS": "week"}, cwd=tmp_path)


def test_masking_keeps_prefix_and_last_four() -> None:
    assert mask("sk_test_abcdefghijklmnopa1b2") == "sk_test_…a1b2"
    assert mask(WEBHOOK_SECRET) == "whsec_…LaSw"
    assert mask(None) == "(unset)"


def test_database_named_in_the_url_path_wins(tmp_path: Path) -> None:
    from pymongo import MongoClient

    from clerksync.store.mongo import database_name

    settings = load_settings(environ={"MONGODB_DB": "fallback"}, cwd=tmp_path)
    with_path: MongoClient[dict] = MongoClient("mongodb://127.0.0.1:1/appdb", connect=False)
    without: MongoClient[dict] = MongoClient("mongodb://127.0.0.1:1/", connect=False)
    assert database_name(settings, with_path) == "appdb"
    assert database_name(settings, without) == "fallback"
    assert database_name(load_settings(environ={}, cwd=tmp_path), without) == "clerksync"


@pytest.fixture(scope="module")
def developer_env() -> Iterator[None]:
    """A developer's shell that sets every variable clerksync reads, set before the autouse
    (function-scoped) isolation runs: what the isolation must clear."""
    import os

    saved = {name: os.environ.get(name) for name in KNOWN_NAMES}
    os.environ.update({name: "from-the-developer-shell" for name in KNOWN_NAMES})
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_the_suite_isolates_every_variable_clerksync_reads(developer_env: None) -> None:
    import os

    leaked = [name for name in KNOWN_NAMES if name in os.environ]
    assert leaked == []
    assert load_settings().webhook_secret is None


def test_a_webhook_secret_without_its_prefix_is_told_to_add_it() -> None:
    import base64

    from clerksync.settings import check_webhook_secret

    bare = base64.b64encode(b"k" * 24).decode()
    assert check_webhook_secret("whsec_" + bare) is None
    assert "put whsec_ in front" in (check_webhook_secret(bare) or "")
    assert "not the endpoint id" in (check_webhook_secret("ep_2abc") or "")


def test_a_subfolder_of_the_project_uses_the_projects_state(tmp_path: Path) -> None:
    """Like git's .git: from a subfolder, the project's .clerksync (its embedded store and dev
    secret), not a new empty one; never past the project's root."""
    from clerksync.settings import load_settings

    project = tmp_path / "app"
    (project / "src" / "deep").mkdir(parents=True)
    (project / "package.json").write_text("{}")
    (project / ".clerksync").mkdir()
    settings = load_settings(environ={}, cwd=project / "src" / "deep")
    assert settings.state_dir == project / ".clerksync"
    (tmp_path / ".clerksync").mkdir()  # one above the project's root: not reached
    other = tmp_path / "other"
    (other / "sub").mkdir(parents=True)
    (other / "pyproject.toml").write_text("")
    assert load_settings(environ={}, cwd=other / "sub").state_dir == other / "sub" / ".clerksync"
    loose = tmp_path / "loose" / "sub"  # no project root at all: nothing is searched
    loose.mkdir(parents=True)
    assert load_settings(environ={}, cwd=loose).state_dir == loose / ".clerksync"
    assert load_settings(environ={"CLERKSYNC_HOME": str(other)}, cwd=project).state_dir == other


def test_the_session_token_settings() -> None:
    from tests.support.tokens import public_pem

    pem = public_pem()
    one_line = pem.replace("\n", "\\n")  # as a container's settings hold it
    settings = load_settings(
        environ={
            "CLERK_JWT_KEY": one_line,
            "CLERK_AUTHORIZED_PARTIES": "https://app.example.com/, http://localhost:3000",
        }
    )
    assert settings.clerk_jwt_key == pem and settings.problems() == []
    assert settings.authorized_origins == ["https://app.example.com", "http://localhost:3000"]
    assert load_settings(environ={}).authorized_origins is None


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("CLERK_JWT_KEY", "sk_test_abc", "PEM public key"),
        ("CLERK_JWT_KEY", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "cut"),
        ("CLERK_AUTHORIZED_PARTIES", "example.com", "origin"),
        ("CLERK_AUTHORIZED_PARTIES", "https://example.com/login", "no path"),
        ("CLERK_AUTHORIZED_PARTIES", " , ", "names no origin"),
    ],
)
def test_malformed_session_token_settings_say_what_is_wrong(
    name: str, value: str, said: str
) -> None:
    [(named, problem)] = load_settings(environ={name: value}).problems()
    assert named == name and said in problem


def test_the_names_clerk_used_before_for_the_key_get_a_did_you_mean() -> None:
    settings = load_settings(environ={"CLERK_PEM_PUBLIC_KEY": "x"})
    assert settings.misnamed == (("CLERK_PEM_PUBLIC_KEY", "CLERK_JWT_KEY"),)
