"""Strict JSON: refuse what ``json.loads`` would quietly accept or choke on.

Python's json accepts duplicate keys (last wins), NaN and Infinity, integers of any length
(then fails converting ones over 4,300 digits) and nests until the C stack gives out. Each
would make a document mean something other than what its author sees, or crash the reader:
each is a coded error with a position (line and column, or a JSON Pointer).
"""

from __future__ import annotations

import json
import math
import os
import re
from functools import cache
from time import perf_counter
from typing import Any

from policy_engine import msgspec_rent
from policy_engine.errors import Diagnostic, PackError, PolicyError, Span
from policy_engine.reading.bounds import DEFAULT_BOUNDS, MAX_JSON_INTEGER, MAX_NUMBER_LITERAL, Bounds
from policy_engine.reading.files import decode_utf8, read_bounded


class _Refused(Exception):
    def __init__(self, code: str, message: str, hint: str, needle: str | None = None) -> None:
        self.code, self.message, self.hint, self.needle = code, message, hint, needle


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = dict(pairs)
    if len(out) == len(pairs):  # no key repeats (the common case, checked in C)
        return out
    out = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(
                "104",
                f"duplicate key {key!r}",
                "remove one of the duplicated keys; JSON readers disagree on which one wins",
                json.dumps(key) + ":",
            )
        out[key] = value
    return out


def _refuse_constant(token: str) -> Any:
    raise _Refused("105", f"{token} is not a JSON number", "use a finite number", token)


def _bounded_int(literal: str) -> int:
    value = int(literal) if len(literal) <= MAX_NUMBER_LITERAL else None
    if value is None or abs(value) > MAX_JSON_INTEGER:
        shown = literal if len(literal) <= 24 else literal[:20] + f"... ({len(literal)} digits)"
        raise _Refused(
            "118",
            f"integer {shown} is out of range",
            f"integers must lie within ±{MAX_JSON_INTEGER:,} (2^53 - 1, I-JSON)",
            literal[:24],
        )
    return value


def _bounded_float(literal: str) -> float:
    value = float(literal) if len(literal) <= MAX_NUMBER_LITERAL else math.inf
    if not math.isfinite(value):
        shown = literal if len(literal) <= 24 else literal[:20] + "..."
        raise _Refused("118", f"number {shown} is out of range", "use a finite number of ordinary size", literal[:24])
    return value


def _position(text: str, needle: str | None, *, second: bool) -> tuple[int, int]:
    if not needle:
        return 0, 0
    pos = text.find(needle)
    if second and pos >= 0:
        again = text.find(needle, pos + 1)
        pos = again if again >= 0 else pos
    if pos < 0:
        return 0, 0
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1


def depth_exceeds(doc: Any, max_depth: int) -> tuple[Any, ...] | None:
    """The path of the first container deeper than ``max_depth``, walked iteratively (a
    recursive walk of a hostile document would exhaust the stack); None when within.

    A first pass keeps only containers and their depth (no paths: every document read
    pays it); only a document that is too deep is walked again for the path."""
    stack: list[tuple[Any, int]] = [(doc, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        value, depth = pop()
        if depth >= max_depth and isinstance(value, (dict, list)):
            return _deep_path(doc, max_depth)
        depth += 1
        for item in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
            if isinstance(item, (dict, list)):
                push((item, depth))
    return None


def _deep_path(doc: Any, max_depth: int) -> tuple[Any, ...] | None:
    stack: list[tuple[Any, tuple[Any, ...]]] = [(doc, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, (dict, list)) and len(path) >= max_depth:
            return path
        if isinstance(value, dict):
            stack.extend((v, path + (k,)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, path + (i,)) for i, v in enumerate(value))
    return None


def check_depth(doc: Any, bounds: Bounds, *, error: type[PolicyError], code: str, file: str) -> None:
    """Refuse a parsed document nested deeper than the bound, pointing at the first too-deep
    container (JSON and YAML readers share it)."""
    deep = depth_exceeds(doc, bounds.max_depth)
    if deep is not None:
        where = json_pointer(deep)
        raise error(
            [
                Diagnostic(
                    code,
                    f"nested deeper than {bounds.max_depth} levels",
                    hint="flatten the document",
                    file=file,
                    pointer=where,
                )
            ]
        )


def json_pointer(path: tuple[Any, ...]) -> str:
    """RFC 6901; a lone surrogate in a key is shown as its escape (it cannot be printed)."""
    return "".join(
        "/" + str(p).encode("utf-8", "backslashreplace").decode("utf-8").replace("~", "~0").replace("/", "~1")
        for p in path
    )


#: a UTF-16 surrogate escape (a literal prefix: the search skips along in C)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _may_hold_surrogates(text: str, *, from_utf8: bool = False) -> bool:
    """A surrogate escape, or a surrogate in the text itself (text not read from UTF-8):
    the only ways a lone one gets in. Cheap for the usual pack: one or two C scans."""
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None:
        return True
    return not from_utf8 and not text.isascii() and not _encodable(text)


def lone_surrogate_path(doc: Any) -> tuple[Any, ...] | None:
    """The path of the first key or string holding a lone UTF-16 surrogate (``"\\ud800"``
    unpaired), None when there is none. JSON's grammar lets such an escape through, but it
    is no Unicode text: UTF-8 cannot encode it, so the digest, the prompt or the report
    would fail on it later. I-JSON (RFC 7493) forbids it; so do we, at the door."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(doc, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if not value.isascii() and not _encodable(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and not key.isascii() and not _encodable(key):
                    return (*path, key)
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(value))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def lone_surrogate_error(
    doc: Any, file: str, *, error: type[PolicyError] = PackError, code_prefix: str = "P"
) -> PolicyError | None:
    """The coded error for a document holding a lone surrogate (see `lone_surrogate_path`)."""
    path = lone_surrogate_path(doc)
    if path is None:
        return None
    return error(
        [
            Diagnostic(
                f"{code_prefix}121",
                "a string holds a lone UTF-16 surrogate escape (such as \\ud800 without its pair)",
                hint="write the character as UTF-8, or escape it as a complete pair (\\ud83d\\ude00);"
                " a lone surrogate is not Unicode text (I-JSON, RFC 7493)",
                file=file,
                pointer=json_pointer(path),
            )
        ]
    )


#: UTF-8 bytes -> b"1" for an ASCII digit, b" " for anything else (no byte of a multi-byte
#: character is an ASCII digit), so that a run of 16 digits is a plain substring search:
#: long enough for an integer outside ±(2^53 - 1), and found in any number literal longer
#: than MAX_NUMBER_LITERAL (a literal is at most three digit runs and four signs or marks:
#: 3 x 15 + 4 < 64). A regular expression took ten times as long.
_DIGITS_AS_ONES = bytes(0x31 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGITS = b"1" * 16
#: containers beyond which a document is walked for its depth before the fast path is trusted
_FAST_DEPTH = 900
#: "the fast path cannot vouch for this text"
_SLOW = object()


#: what marks a content part as the reader's JSON text (`_fast_document`), not marshal
#: bytes: marshal's first byte is a type code, never NUL, so the two kinds never collide
JSON_PART = b"\x00"


class SharedValues(dict[bytes, tuple[Any, int, bytes]]):
    """A run's memory of the top-level values it has read: a value's exact JSON text ->
    (the value, the ``:`` in that text, its content part). A corpus's packs mostly repeat
    their candidate lists word for word, and parsing them again was the largest cost of
    reading one: with this memory each distinct text is parsed once per run.

    The values are shared by every document that holds the same text, so a document read
    with it must never be changed: only a reader that hands its documents straight to
    the evaluator (a corpus run) uses one. Bounded by entries and by the texts' total
    size (a run whose packs never repeat a list must not hold them all): cleared when
    either is full."""

    __slots__ = ("held", "max_bytes")

    #: distinct values kept (a run's packs hold a few distinct lists each)
    MAX = 1024
    #: total characters of the texts kept (their parsed values take a few times more)
    MAX_BYTES = 16 * 1024 * 1024

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        super().__init__()
        self.held = 0
        self.max_bytes = max_bytes

    def keep(self, text: bytes, known: tuple[Any, int, bytes]) -> None:
        if len(self) >= self.MAX or self.held + len(text) > self.max_bytes:
            self.clear()
            self.held = 0
        if len(text) <= self.max_bytes:
            self[text] = known
            self.held += len(text)


def _fast_shared(text: str, shared: SharedValues) -> tuple[Any, dict[str, bytes] | None]:
    """`_fast_document` for an object, its top-level values taken from ``shared`` when their
    exact text was read before. The object is cut into its values' texts by msgspec
    (without building them); only a text not seen before is parsed, and checked as a
    whole document is (its digits, its colons, its depth: one level less). The
    duplicate-key check adds up: the text's colons are one per top-level key, those in
    the keys, and those in each value's text. A text that is no object, or a value that
    fails a check, goes to `_fast_document` or the strict reader."""
    if "\\u003" in text:  # a colon may hide in an escape (see `_fast_document`)
        return _SLOW, None
    import msgspec

    try:
        top = _top_level().decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, ValueError):
        return _fast_document(text)
    doc: dict[str, Any] = {}
    parts: dict[str, bytes] = {}
    colons = len(top) + sum(key.count(":") for key in top)
    for key, raw in top.items():
        data = bytes(raw)
        known = shared.get(data)
        if known is None:
            known = _fresh_value(data)
            if known is None:
                return _SLOW, None
            shared.keep(data, known)
        doc[key], n, parts[key] = known
        colons += n
    if colons != text.count(":"):
        return _SLOW, None
    return doc, parts


@cache
def _top_level() -> Any:
    """msgspec's decoder of an object into its values' raw texts (built once)."""
    import msgspec

    return msgspec.json.Decoder(dict[str, msgspec.Raw])


def _fresh_value(data: bytes) -> tuple[Any, int, bytes] | None:
    """(value, its text's colons, its content part) of one top-level value's text, under
    the checks `_fast_document` makes on a whole text; None when one fails."""
    import msgspec

    if _LONG_DIGITS in data.translate(_DIGITS_AS_ONES):
        return None
    try:
        value = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError, ValueError):
        return None
    colons = data.count(b":")
    if msgspec.json.encode(value).count(b":") != colons:
        return None
    depth = _FAST_DEPTH - 1  # the value sits one level inside the document
    if data.count(b"[") + data.count(b"{") >= depth and depth_exceeds(value, depth) is not None:
        return None
    return value, colons, JSON_PART + data


def _fast_document(text: str) -> tuple[Any, dict[str, bytes] | None]:
    """The document ``text`` holds, parsed by msgspec's C decoder, when that provably is
    what the strict reader would return (`_SLOW` otherwise: the strict reader then parses
    it and names any problem precisely), with each top-level value's compact JSON text
    (None for a document that is no object). The strict reader's hooks are Python calls per
    object and per number, most of the time a corpus spends reading.

    msgspec itself refuses NaN, Infinity, numbers that overflow a float, lone surrogate
    escapes and what JSON's grammar refuses. What it accepts and the strict reader does
    not is ruled out here:
    - integers beyond ±(2^53 - 1) and over-long number literals: no run of 16 digits;
    - duplicate keys (msgspec keeps the last): every ``:`` outside a string separates a
      key from its value, and re-encoding writes each kept key's ``:`` and every ``:``
      inside a string again, so the counts are equal exactly when no key was dropped,
      provided no ``:`` was written as an escape (an escape of
      U+003A; any ``u003`` after a backslash sends to the strict reader);
    - nesting the standard library's recursion limit refuses: a document with 900
      containers or more is walked first.
    The re-encoding is done value by value for an object: those texts are the content
    parts the pack loader keys its caches by (`JSON_PART` first), which spares it a
    marshal of the whole document (msgspec writes a pack twice as fast).
    tests/reading/test_json_fast.py compares the two readers on generated texts."""
    if "\\u003" in text or _LONG_DIGITS in text.encode("utf-8", "surrogatepass").translate(_DIGITS_AS_ONES):
        return _SLOW, None
    import msgspec

    try:
        doc = msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError, ValueError):  # UnicodeError is a ValueError
        return _SLOW, None
    encode = msgspec.json.encode
    parts: dict[str, bytes] | None = None
    if type(doc) is dict:
        parts = {key: JSON_PART + encode(value) for key, value in doc.items()}
        colons = len(parts) + sum(key.count(":") for key in parts) + sum(part.count(b":") for part in parts.values())
    else:
        colons = encode(doc).count(b":")
    if colons != text.count(":"):
        return _SLOW, None
    if text.count("[") + text.count("{") >= _FAST_DEPTH and depth_exceeds(doc, _FAST_DEPTH) is not None:
        return _SLOW, None
    return doc, parts


def _strict_document(text: str) -> Any:
    start = perf_counter()
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_refuse_constant,
            parse_int=_bounded_int,
            parse_float=_bounded_float,
        )
    finally:
        msgspec_rent.pay(perf_counter() - start)


def parse_json_text(
    text: str,
    file: str,
    *,
    error: type[PolicyError] = PackError,
    code_prefix: str = "P",
    bounds: Bounds = DEFAULT_BOUNDS,
    check_nesting: bool = True,
) -> Any:
    """The document in ``text``, strictly parsed. ``check_nesting=False`` is for a caller
    that bounds the nesting itself before anything recurses into the document (the pack
    loader: its fast check is a bounded walk, its slow path checks the depth first)."""
    return _parse(text, file, error, code_prefix, bounds, check_nesting, False, None)[0]


def parse_json_parts(
    text: str, file: str, *, check_nesting: bool = True, shared: SharedValues | None = None
) -> tuple[Any, dict[str, bytes] | None]:
    """`parse_json_text` of a pack (its errors and bounds), and each top-level value's
    content part when the fast reader had them (see `_fast_document`; None otherwise).
    ``shared``: the run's values read before (`SharedValues`: the document must then never
    be changed)."""
    return _parse(text, file, PackError, "P", DEFAULT_BOUNDS, check_nesting, False, shared)


def _parse(
    text: str,
    file: str,
    error: type[PolicyError],
    code_prefix: str,
    bounds: Bounds,
    check_nesting: bool,
    from_utf8: bool,
    shared: SharedValues | None,
) -> tuple[Any, dict[str, bytes] | None]:
    """(document, content parts). ``from_utf8``: ``text`` was decoded from strict UTF-8,
    which holds no surrogate, so only an escape can bring one in."""
    if not text.strip():
        raise error(
            [Diagnostic(f"{code_prefix}115", "the file is empty", hint="give a JSON document", file=file, pointer="")]
        )
    try:
        if not msgspec_rent.owned():
            doc, parts = _SLOW, None
        elif shared is not None:
            doc, parts = _fast_shared(text, shared)
        else:
            doc, parts = _fast_document(text)
        # msgspec refuses a lone surrogate, escaped or not: only the strict reader's
        # documents need the search below
        strict = doc is _SLOW
        if strict:
            doc = _strict_document(text)
    except _Refused as bad:
        line, col = _position(text, bad.needle, second=bad.code == "104")
        if line:
            raise error(
                [Diagnostic(f"{code_prefix}{bad.code}", bad.message, hint=bad.hint, span=Span(file, line, col))]
            ) from None
        raise error(
            [Diagnostic(f"{code_prefix}{bad.code}", bad.message, hint=bad.hint, file=file, pointer="")]
        ) from None
    except json.JSONDecodeError as exc:
        raise error(
            [
                Diagnostic(
                    f"{code_prefix}103",
                    f"not valid JSON: {exc.msg}",
                    hint="fix the JSON syntax at this line and column",
                    span=Span(file, exc.lineno, exc.colno),
                )
            ]
        ) from None
    except RecursionError:
        raise error(
            [
                Diagnostic(
                    f"{code_prefix}119",
                    "JSON nested too deeply",
                    hint=f"nesting is limited to {bounds.max_depth} levels",
                    file=file,
                    pointer="",
                )
            ]
        ) from None
    if check_nesting:
        check_depth(doc, bounds, error=error, code=f"{code_prefix}119", file=file)
    if strict and _may_hold_surrogates(text, from_utf8=from_utf8):  # rare: only then is every string looked at
        surrogate = lone_surrogate_error(doc, file, error=error, code_prefix=code_prefix)
        if surrogate is not None:
            raise surrogate
    return doc, parts


def read_json_file(
    path: str | os.PathLike[str],
    *,
    error: type[PolicyError] = PackError,
    code_prefix: str = "P",
    bounds: Bounds = DEFAULT_BOUNDS,
    check_nesting: bool = True,
) -> tuple[Any, str]:
    """(document, label). ``-`` reads standard input, under the same size bound as a file."""
    text, label = _read_text(path, error, code_prefix, bounds)
    return _parse(text, label, error, code_prefix, bounds, check_nesting, True, None)[0], label


def read_json_parts(
    path: str | os.PathLike[str], *, check_nesting: bool = True, shared: SharedValues | None = None
) -> tuple[Any, str, dict[str, bytes] | None]:
    """(document, label, content parts) of a pack file: `read_json_file` and the parts of
    `parse_json_parts` (``shared``: see there)."""
    text, label = _read_text(path, PackError, "P", DEFAULT_BOUNDS)
    doc, parts = _parse(text, label, PackError, "P", DEFAULT_BOUNDS, check_nesting, True, shared)
    return doc, label, parts


def _read_text(
    path: str | os.PathLike[str], error: type[PolicyError], code_prefix: str, bounds: Bounds
) -> tuple[str, str]:
    raw, label = read_bounded(path, bounds, error=error, prefix=code_prefix)
    return decode_utf8(raw, label, error=error, code=f"{code_prefix}103"), label
