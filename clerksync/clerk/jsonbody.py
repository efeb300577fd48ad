"""Clerk's JSON as it arrives, read whatever an end user typed into it, and JSON written
back out strictly (RFC 8259).

Svix carries what end users type (names, ``unsafe_metadata``) verbatim. Python's parser
refuses an integer of more than 4,300 digits (its integer-digit limit) and takes ``NaN``
and ``Infinity``, which are not JSON. ``loads`` keeps every number clerksync could not
store as a Python value (an integer outside 64 bits, a float that overflows, ``NaN``,
``Infinity``) as a ``JsonNumber``, the text it was: no such number is a reason to refuse a
delivery, and no validator takes one for an int or a string. ``dumps`` prints it back as
valid JSON: the digits as they came, the non-finite constants (which JSON cannot hold) as
the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, as it does non-finite floats.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

#: nesting every reader of a stored body can parse again (``events show``, ``replay``):
#: Python's parser stops at its recursion limit (1000) minus the caller's stack, so what the
#: receiver's thread could take, a deeper CLI stack could not. Far past any Clerk event (a
#: handful of levels); ``unsafe_metadata`` 40 or 500 levels deep is taken.
MAX_DEPTH = 512

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NON_FINITE = ("NaN", "Infinity", "-Infinity")


class NotJson(ValueError):
    """The body is not JSON clerksync can read; the message completes "body …"."""


@dataclass(frozen=True)
class JsonNumber:
    """A JSON number kept as the text it was (see the module docstring)."""

    text: str

    def __str__(self) -> str:
        return self.text


def _int(text: str) -> int | JsonNumber:
    if len(text) < 19:  # 18 digits, or a sign and 17: always inside 64 bits
        return int(text)
    if len(text) <= 20:  # a sign and 19 digits at most: under Python's digit limit
        value = int(text)
        if INT64_MIN <= value <= INT64_MAX:
            return value
    return JsonNumber(text)


def _float(text: str) -> float | JsonNumber:
    value = float(text)
    return value if math.isfinite(value) else JsonNumber(text)


#: a number orjson would read otherwise than ``loads`` does (past 64 bits it reads an
#: integer as unsigned, then as a float) has 19 digits in a row: such a body is read by
#: Python's parser. Found by mapping every digit to "0", anything else to ".", and looking
#: for 19 zeros: a tenth of what a regular expression's scan costs.
DIGITS_ONLY = bytes(48 if 48 <= b <= 57 else 46 for b in range(256))
LONG_DIGITS = b"0" * 19


def loads(body: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of ``body``, numbers as above; NotJson when it is not JSON (or not
    UTF-8), or nests deeper than ``max_depth``.

    A body orjson reads the same (every delivery but a rare one) is read by it, a few times
    faster; anything it refuses or could read otherwise (a long number, NaN, a lone
    surrogate, another encoding) by Python's parser, which decides."""
    if isinstance(body, bytes) and LONG_DIGITS not in body.translate(DIGITS_ONLY):
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
        else:
            # Nesting is at most the count of brackets that open it: mostly, no walk.
            if body.count(b"{") + body.count(b"[") > max_depth and deeper_than(value, max_depth):
                raise NotJson(f"is nested deeper than {max_depth} levels")
            return value
    return _python_loads(body, max_depth)


def _python_loads(body: bytes | str, max_depth: int) -> Any:
    try:
        value = json.loads(body, parse_int=_int, parse_float=_float, parse_constant=JsonNumber)
    except RecursionError:
        raise NotJson("is nested too deeply") from None
    except ValueError:  # UnicodeDecodeError included
        raise NotJson("is not JSON") from None
    if deeper_than(value, max_depth):
        raise NotJson(f"is nested deeper than {max_depth} levels")
    return value


def deeper_than(value: Any, limit: int) -> bool:
    """Does ``value`` nest more than ``limit`` objects and arrays deep? (No recursion: the
    answer does not depend on the caller's stack.)"""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, (dict, list)):
            continue
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def dumps(value: Any, *, indent: int | None = None) -> str:
    """``value`` as strict JSON (RFC 8259): what ``loads`` kept as text printed as it was,
    non-finite numbers as strings, anything else JSON has no type for as its ``str``, keys as
    strings, every character past ASCII escaped (a lone surrogate prints as ``\\ud800``)."""
    raw: list[str] = []
    marker = "\x00" + secrets.token_hex(8) + ":"

    def scalar(item: Any) -> Any:
        if isinstance(item, JsonNumber):
            if item.text in NON_FINITE:
                return item.text
            raw.append(item.text)
            return f"{marker}{len(raw) - 1}"
        if isinstance(item, float) and not math.isfinite(item):
            return "NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity")
        return item

    def plain(root: Any) -> Any:
        """A copy JSON can hold, made without recursion (a payload may nest 512 deep)."""
        top: list[Any] = [None]
        stack: list[tuple[Any, Any, Any]] = [(root, top, 0)]
        while stack:
            item, parent, key = stack.pop()
            if isinstance(item, Mapping):
                copy: dict[str, Any] = {}
                for k, v in item.items():
                    name = k if isinstance(k, str) else str(k)
                    copy[name] = None
                    stack.append((v, copy, name))
                parent[key] = copy
            elif isinstance(item, (list, tuple)):
                items: list[Any] = [None] * len(item)
                stack.extend((v, items, i) for i, v in enumerate(item))
                parent[key] = items
            else:
                parent[key] = scalar(item)
        return top[0]

    text = json.dumps(plain(value), indent=indent, allow_nan=False, default=str)
    if raw:
        quoted = re.escape(json.dumps(marker)[:-1]) + r'(\d+)"'
        text = re.sub(quoted, lambda m: raw[int(m[1])], text)
    return text
