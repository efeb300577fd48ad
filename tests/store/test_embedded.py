"""The embedded store: a daemon only its owner can reach, in a folder only its owner can read."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from clerksync.store.embedded import ensure_server, running_daemon, stop_server


def modes(root: Path) -> dict[str, int]:
    found = {str(root): stat.S_IMODE(root.stat().st_mode)}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            found[path] = stat.S_IMODE(os.stat(path).st_mode)
    return found


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / ".clerksync"
    # as an older version left it: open folder, readable file
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    (folder / "embedded.log").write_text("old log\n")
    (folder / "embedded.log").chmod(0o644)
    try:
        yield folder
    finally:
        stop_server(folder)


def test_the_embedded_store_is_its_owners_alone(state_dir: Path, cli) -> None:
    uri = ensure_server(state_dir)
    with MongoClient(uri, serverSelectionTimeoutMS=5000) as owner:
        owner.clerksync.users.insert_one({"clerkId": "user_x", "email": "x@example.com"})
    # Another local account knows the port, not the password: refused.
    port = running_daemon(state_dir)["port"]  # type: ignore[index]
    with MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true") as stranger:
        with pytest.raises(OperationFailure) as refused:
            stranger.clerksync.users.find_one()
        assert refused.value.code == 13
        with pytest.raises(OperationFailure):
            stranger.clerksync.users.update_many({}, {"$set": {"isAdmin": True}})
    found = modes(state_dir)
    folders = {p: m for p, m in found.items() if os.path.isdir(p)}
    files = {p: m for p, m in found.items() if not os.path.isdir(p)}
    assert any(p.endswith(".wt") for p in files)  # the data files are among them
    assert set(folders.values()) == {0o700}, folders
    assert set(files.values()) == {0o600}, files
    # every command finds the daemon and its credentials by itself
    result = cli("users", "list", "--json")
    assert result.exit_code == 0, result.stderr
    assert "x@example.com" in result.stdout
