"""The state directory (``CLERKSYNC_HOME``, default ``./.clerksync``): one place for how its
files are written and how the processes they name are checked.

It holds secrets (the dev signing secret, the embedded store's password) and the
embedded store's data, so the folder is 0700 and every file 0600, whoever writes
it first: ``send`` and ``serve`` as much as the embedded store's daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: files that mark a project's root folder: the search for its ``.clerksync`` stops there
PROJECT_MARKERS = (".git", "pyproject.toml", "package.json")


def project_folders(cwd: Path) -> tuple[Path, ...]:
    """The folders from ``cwd`` up to its project's root (the first folder up with ``.git``,
    ``pyproject.toml`` or ``package.json``), nearest first; just ``cwd`` outside a project or
    when the search would pass the home folder first."""
    home = Path.home()
    chain: list[Path] = []
    for folder in (cwd, *cwd.parents):
        chain.append(folder)
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return tuple(chain)
        if folder == home:
            break
    return (cwd,)


def default_state_dir(cwd: Path) -> Path:
    """``./.clerksync``, or, from a subfolder of a project, the project's: the nearest one
    between here and the project's root (``project_folders``), as git finds ``.git``. A
    command run from ``src/`` then uses the project's embedded store and dev secret, not a
    new empty store. Outside a project, or past the home folder, nothing is searched: a stray
    ``.clerksync`` in a home or temporary folder is never taken up."""
    for folder in project_folders(cwd):
        if (folder / ".clerksync").is_dir():
            return folder / ".clerksync"
    return cwd / ".clerksync"


def env_files(cwd: Path) -> tuple[Path, ...]:
    """The ``.env.local`` and ``.env`` clerksync reads: those of the nearest folder between
    ``cwd`` and the project's root that has either, searched as ``.clerksync`` is, so a
    command run from ``src/`` reads the project's settings, not none (and then another
    database: the embedded store)."""
    for folder in project_folders(cwd):
        found = tuple(p for p in (folder / ".env.local", folder / ".env") if p.is_file())
        if found:
            return found
    return ()


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (0700), made if missing."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def private_open(path: Path, flags: int) -> int:
    """``os.open`` that creates the file 0600, and makes an existing one 0600."""
    fd = os.open(path, flags | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def write_private_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON, readable by this user only, replacing the file atomically (a
    reader sees the old file or the new one, never half of one)."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with os.fdopen(private_open(tmp, os.O_WRONLY | os.O_TRUNC), "w") as handle:
        json.dump(data, handle)
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def tighten(state_dir: Path) -> None:
    """Folders 0700 and files 0600 under ``state_dir`` (an older version left them 0755/0644)."""
    for root, dirs, files in os.walk(state_dir):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, name), 0o700)
        for name in files:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, name), 0o600)
    with contextlib.suppress(OSError):
        os.chmod(state_dir, 0o700)


def pid_alive(pid: int) -> bool:
    """Is process ``pid`` running? A pid a file recorded may be any number: 0 and negative
    ones name process groups (``kill(0, 0)`` always succeeds), so they are never alive."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    with contextlib.suppress(ChildProcessError, OSError, OverflowError):
        os.waitpid(pid, os.WNOHANG)  # our own child (the command that started it): reap it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except (OverflowError, ValueError, OSError):  # no such pid can exist
        return False
    return True
