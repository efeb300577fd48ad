"""What every command's output must be, whatever the data: no character a terminal would
take as a command or show as something else, and ``--json`` that is JSON (RFC 8259)."""

from __future__ import annotations

import json
from typing import Any

from clerksync.display import needs_escape

#: a value an end user (a name), a sender (a header) or an app (its own documents) could
#: have written: terminal escapes (OSC title, clear screen, CSI as one C1 byte), a bidi
#: override and isolate, line and paragraph separators, NEL, CR, and Rich markup
HOSTILE = "\x1b]0;PWNED\x07\x1b[2J\u202eevil\u2028line\u2029para\u0085nel\rcr\u2066\x9b31m[red]x[/]"


def assert_clean(text: str) -> None:
    """No line of ``text`` holds a character ``clerksync.display`` shows as an escape."""
    for line in text.split("\n"):
        assert not needs_escape(line), repr(line)


def strict_json(text: str) -> Any:
    """``text`` parsed as RFC 8259 does (NaN, Infinity and -Infinity are not JSON)."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse, parse_int=str, parse_float=str)


def one_line(text: str) -> bool:
    """A message printed as one line (a refusal, an error)."""
    return text.count("\n") == 1 and text.endswith("\n")
