"""What ``serve --dev`` and ``send`` keep between runs, in the state dir (``CLERKSYNC_HOME``,
default ``./.clerksync``), all mode 0600:

* ``dev-secret.json``: the signing secret of ``serve --dev``. It is made once
  and kept across restarts (an app's ``.env`` can hold it), until
  ``serve --dev --rotate-secret`` makes a new one.
* ``serve.json``: the URL and pid of the running ``serve``, written once it
  can bind, removed when it stops by the process that wrote it (never by a
  second ``serve`` that could not start).
* ``send-state.json``: the users ``send`` created, as last sent, so
  ``send user.updated`` changes the last one (or the one named) and keeps
  every field it was not told to change.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clerksync.statedir import pid_alive, read_json, write_private_json

DEV_SECRET_FILE = "dev-secret.json"


SERVER_FILE = "serve.json"


SEND_STATE_FILE = "send-state.json"


MAX_REMEMBERED = 100


def dev_secret(state_dir: Path, *, rotate: bool = False) -> tuple[str, bool]:
    """(the dev signing secret, made now?): kept across restarts until ``rotate``."""
    from clerksync.clerk.webhooks import new_secret
    from clerksync.settings import check_webhook_secret

    path = state_dir / DEV_SECRET_FILE
    stored = read_json(path) or {}
    secret = stored.get("secret")
    if not rotate and isinstance(secret, str) and check_webhook_secret(secret) is None:
        return secret, False
    secret = new_secret()
    write_private_json(path, {"secret": secret})
    return secret, True


def read_dev_secret(state_dir: Path) -> str | None:
    """The kept dev secret, if ``serve --dev`` ever made one."""
    secret = (read_json(state_dir / DEV_SECRET_FILE) or {}).get("secret")
    return secret if isinstance(secret, str) else None


def write_running_server(state_dir: Path, url: str, *, dev: bool) -> Path:
    path = state_dir / SERVER_FILE
    write_private_json(path, {"url": url, "pid": os.getpid(), "dev": dev})
    return path


def forget_running_server(state_dir: Path) -> None:
    """Remove ``serve.json`` if this process wrote it (a newer ``serve`` may own it now)."""
    path = state_dir / SERVER_FILE
    info = read_json(path) or {}
    if info.get("pid") == os.getpid():
        with contextlib.suppress(OSError):
            path.unlink()


def running_server(state_dir: Path) -> dict[str, Any] | None:
    """``{"url", "dev", "secret"}`` of the ``serve`` running on this state dir; None if none."""
    info = read_json(state_dir / SERVER_FILE)
    if not info or not isinstance(info.get("url"), str):
        return None
    try:
        pid = int(info["pid"])
    except (KeyError, TypeError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    dev = bool(info.get("dev"))
    return {"url": info["url"], "dev": dev, "secret": read_dev_secret(state_dir) if dev else None}


@dataclass
class SendState:
    """The users ``send`` created, as last sent (ids only leave the machine in events)."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    last: str | None = None

    @classmethod
    def load(cls, state_dir: Path) -> SendState:
        data = read_json(state_dir / SEND_STATE_FILE) or {}
        users = data.get("users")
        last = data.get("last")
        return cls(
            users=users if isinstance(users, dict) else {},
            last=last if isinstance(last, str) else None,
        )

    def save(self, state_dir: Path) -> None:
        keep = dict(list(self.users.items())[-MAX_REMEMBERED:])
        write_private_json(state_dir / SEND_STATE_FILE, {"users": keep, "last": self.last})

    def sent(self, body: Mapping[str, Any]) -> None:
        """Remember what a 2xx delivery said about a user."""
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        assert isinstance(data, dict)
        user_id = data.get("id")
        if not isinstance(user_id, str) or not user_id.startswith("user_"):
            return
        if body.get("type") == "user.deleted":
            self.users.pop(user_id, None)
            if self.last == user_id:
                self.last = next(reversed(self.users), None) if self.users else None
        elif body.get("type") in ("user.created", "user.updated"):
            self.users.pop(user_id, None)
            self.users[user_id] = dict(data)
            self.last = user_id
