"""One rule for printing text clerksync did not write: what end users typed (names,
organization names), what a sender put in a header, what an app wrote in its documents.

Such text reaches an operator's terminal and log files. Shown as themselves, its control
characters would be commands there (ESC starts a terminal escape, OSC sets the window
title, CR rewrites a line), its bidi controls would reorder what is shown (``U+202E``
prints the rest of a line backwards: "Trojan Source"), and its line separators would start
lines that are not clerksync's. So each of these is shown as an escape that says what it
was: C0 and C1 controls and DEL as ``\\x1b``, ``\\x85`` (a newline in data as ``\\n``);
bidi controls (``U+061C``, ``U+200E``, ``U+200F``, ``U+202A``–``U+202E``,
``U+2066``–``U+2069``), the line and paragraph separators ``U+2028``/``U+2029`` and lone
surrogates (which no terminal can encode) as ``\\u202e``. The CLI's tables, ``show``
commands, ``tail``, doctor and error lines, and ``serve``'s plain log lines all go through
``visible``.
"""

from __future__ import annotations

from typing import Any

_ESCAPES: dict[int, str] = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x20), 0x7F)}
_ESCAPES[0x0A] = "\\n"
_ESCAPES.update({c: f"\\x{c:02x}" for c in range(0x80, 0xA0)})
_ESCAPES.update(
    {
        c: f"\\u{c:04x}"
        for c in (
            0x061C,
            0x200E,
            0x200F,
            *range(0x202A, 0x202F),
            *range(0x2066, 0x206A),
            0x2028,
            0x2029,
            *range(0xD800, 0xE000),
        )
    }
)

#: the same, but a newline stays one (a message of clerksync's own may span lines)
_KEEP_NEWLINES = {c: e for c, e in _ESCAPES.items() if c != 0x0A}


def visible(value: Any, *, newlines: bool = False) -> str:
    """``str(value)`` with every character of the module docstring shown as an escape;
    ``newlines`` keeps ``\\n`` as a line break (for messages clerksync wrote around data
    it has already escaped), else it is shown as ``\\x0a`` too."""
    return str(value).translate(_KEEP_NEWLINES if newlines else _ESCAPES)


def needs_escape(text: str) -> bool:
    """Does ``text`` hold a character ``visible`` would escape?"""
    return any(ord(c) in _ESCAPES for c in text)
