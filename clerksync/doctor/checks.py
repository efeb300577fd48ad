"""A doctor check: its status, what was found, and one fix when it is not a pass."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["pass", "info", "warn", "fail"]


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
