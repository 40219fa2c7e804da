"""Indented JSON, byte for byte what ``json.dumps(value, indent=N, ...)`` prints, at C speed.

The standard library serialises in C only without ``indent``; with it, it falls back to
its pure-Python encoder, which was the largest cost of writing a corpus's decisions and of
printing each pack's envelope the way the agent does. Here the C encoder writes the
compact text (same escaping, same number forms, same key order) and msgspec's
``json.format`` re-lays it out with the indentation: only whitespace between tokens
changes, and the layout rules are json's own (``": "`` after keys, one item per line,
``[]`` and ``{}`` for empty containers). tests/test_pretty_json.py compares the two on
generated JSON values.

msgspec is used once its import has paid for itself (`msgspec_rent`): a one-pack run
never imports it. The text is the same either way.
"""

from __future__ import annotations

import json
from time import perf_counter
from typing import Any

from policy_engine import msgspec_rent


def dumps_indented(
    value: Any,
    *,
    indent: int,
    ensure_ascii: bool = True,
    sort_keys: bool = False,
    plain_floats: bool = False,
    json_values: bool = False,
) -> str:
    """``json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)``.

    ``plain_floats``: the caller vouches that ``value`` is made of JSON types only (dicts
    with str keys, lists, tuples, str, int, bool, None) and that each float in it is 0 or
    has a magnitude in [1e-4, 1e16), where msgspec writes floats as json does (json switches
    to an exponent outside that range, msgspec at other points). Then msgspec's encoder
    writes the compact text, several times faster than json's with sorted keys; strings
    and key order come out alike (tests/test_pretty_json.py).

    ``json_values``: the caller vouches only for the types (as above, floats finite, ints
    within 64 bits), as a validated pack does; the floats are checked on msgspec's text
    instead (`floats_may_differ`), and json writes the value when the check finds one that may
    differ."""
    if indent <= 0:  # json puts newlines without indentation there: not msgspec's layout
        return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)
    if not msgspec_rent.owned():
        start = perf_counter()
        text = json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)
        msgspec_rent.pay(perf_counter() - start)
        return text
    import msgspec

    compact = None
    if (plain_floats or json_values) and not ensure_ascii:
        try:
            raw = msgspec.json.encode(value, order="sorted" if sort_keys else None)
        except (TypeError, ValueError, OverflowError):  # json says what is wrong with it
            raw = None
        if raw is not None and (plain_floats or not floats_may_differ(raw)):
            compact = raw.decode("utf-8")
    if compact is None:
        compact = json.dumps(value, ensure_ascii=ensure_ascii, sort_keys=sort_keys)
    return msgspec.json.format(compact, indent=indent)


#: every digit as 0 and ``E`` as ``e``: a digit followed by an exponent mark becomes ``0e``
_EXPONENT_MARKS = bytes.maketrans(b"123456789E", b"000000000e")


def floats_may_differ(written: bytes) -> bool:
    """Whether msgspec's text may hold a float json writes otherwise. json's ``repr`` uses
    an exponent outside [1e-4, 1e16) and msgspec at other points; in range both write the
    same shortest digits. So a float they write differently shows in msgspec's text as an
    exponent (a digit, then ``e``) or as a plain decimal below 1e-4 (``0.0000``). A string
    holding either (``"1e5"``) only sends the value to json. Two byte scans in C, not a
    regular expression (ten times slower on a 100 KB list). tests/test_pretty_json.py
    checks it on floats across the whole range."""
    return b"0.0000" in written or b"0e" in written.translate(_EXPONENT_MARKS)


def plain_float(value: float | None) -> bool:
    """Whether msgspec writes ``value`` as json does (see ``plain_floats``); None is no float."""
    return value is None or value == 0 or 1e-4 <= abs(value) < 1e16
