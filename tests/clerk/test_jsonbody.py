"""``jsonbody.loads``: orjson's fast reading gives what Python's parser gives, to the type,
and whatever orjson would read otherwise goes to Python's parser."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clerksync.clerk.jsonbody import MAX_DEPTH, JsonNumber, NotJson, _python_loads, loads


def typed(value: Any) -> Any:
    """``value`` with every scalar's type (and a float's repr: -0.0 is not 0.0)."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, repr(value))


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(values, st.booleans())
def test_fast_and_python_readings_agree(value: Any, ascii_only: bool) -> None:
    body = json.dumps({"data": value}, ensure_ascii=ascii_only).encode()
    assert typed(loads(body)) == typed(_python_loads(body, MAX_DEPTH))


@pytest.mark.parametrize(
    "body",
    [
        b'{"n": 18446744073709551615}',  # orjson: an unsigned int
        b'{"n": 18446744073709551616}',  # orjson: a float
        b'{"n": 9223372036854775808}',
        b'{"n": -9223372036854775809}',
        b'{"n": 1e400}',
        b'{"n": NaN, "m": -Infinity}',
        b'{"s": "\\ud800"}',  # a lone surrogate
        b'\xef\xbb\xbf{"a": 1}',  # a byte-order mark
        '{"a": 1}'.encode("utf-16"),
    ],
)
def test_what_orjson_reads_otherwise_is_read_by_python(body: bytes) -> None:
    assert typed(loads(body)) == typed(_python_loads(body, MAX_DEPTH))


def test_numbers_past_64_bits_are_kept_as_text() -> None:
    assert loads(b'{"n": 18446744073709551616}') == {"n": JsonNumber("18446744073709551616")}
    assert loads(b"[9223372036854775807]") == [9223372036854775807]


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900, 2000])
def test_nesting_past_the_limit_is_refused_either_way(depth: int) -> None:
    with pytest.raises(NotJson, match="nested"):
        loads(b"[" * depth + b"]" * depth)
    assert loads(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None


@pytest.mark.parametrize("body", [b"", b"{", b'{"a": 1,}', b"\xff\xfe\xfa", b"[1] [2]"])
def test_what_is_not_json_is_refused(body: bytes) -> None:
    with pytest.raises(NotJson):
        loads(body)
