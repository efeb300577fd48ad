"""A doctor check: its status, what was found, and one fix when it is not a pass."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["pass", "info", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    """``hint`` says what to do; ``commands`` are the fix's steps to copy, in order, each one
    line: a shell command (``clerksync …``), a MongoDB shell line (``db.users.…``) or the line
    the app's model declares (``UserSchema.index(…)``, ``IndexModel(…)``). Followed as
    written, they make the check pass (each has a test that does exactly that)."""

    name: str
    status: Status
    detail: str
    hint: str = ""
    commands: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["commands"] = list(self.commands)
        return data


def ok(name: str, detail: str) -> Check:
    return Check(name, "pass", detail)


def info(name: str, detail: str, hint: str = "") -> Check:
    """Worth knowing, not a problem: a local demo without Clerk keys is a working setup."""
    return Check(name, "info", detail, hint)
