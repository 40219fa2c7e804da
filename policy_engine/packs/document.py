"""Reading JSON input documents strictly: refuse what json.loads would quietly accept.

Python's json accepts duplicate keys (last wins) and NaN/Infinity; both would make a pack
mean something other than what its author sees, so both are errors with a position.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from policy_engine.errors import Diagnostic, PackError, Span

MAX_BYTES = 64 * 1024 * 1024


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


class _NonFinite(Exception):
    def __init__(self, token: str) -> None:
        self.token = token


def _refuse_constant(token: str) -> Any:
    raise _NonFinite(token)


def _pointer_to_key(text: str, key: str) -> tuple[int, int]:
    """Best-effort line/column of the second occurrence of a duplicated key."""
    needle = json.dumps(key) + ":"
    first = text.find(needle)
    second = text.find(needle, first + 1) if first >= 0 else -1
    pos = second if second >= 0 else max(first, 0)
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, col


def parse_json_text(text: str, file: str, *, error: type = PackError, code_prefix: str = "P") -> Any:
    if not text.strip():
        raise error([Diagnostic(f"{code_prefix}115", "the file is empty", hint="give a JSON document", file=file, pointer="")])
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    except _Duplicate as dup:
        line, col = _pointer_to_key(text, dup.key)
        raise error(
            [Diagnostic(f"{code_prefix}104", f"duplicate key {dup.key!r}", hint="remove one of the duplicated keys; JSON readers disagree on which one wins", span=Span(file, line, col))]
        ) from None
    except _NonFinite as bad:
        raise error(
            [Diagnostic(f"{code_prefix}105", f"{bad.token} is not a JSON number", hint="use a finite number", file=file, pointer="")]
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
        raise error([Diagnostic(f"{code_prefix}103", "JSON nested too deeply", hint="flatten the document", file=file, pointer="")]) from None


def read_json_file(path: str | os.PathLike[str], *, error: type = PackError, code_prefix: str = "P") -> tuple[Any, str]:
    """Returns (document, label). ``-`` reads standard input."""
    label = str(path)
    if label == "-":
        return parse_json_text(sys.stdin.read(), "<stdin>", error=error, code_prefix=code_prefix), "<stdin>"
    p = Path(path)
    if not p.exists():
        raise error([Diagnostic(f"{code_prefix}101", "no such file", hint="check the path", file=label, pointer="")])
    if p.is_dir():
        raise error([Diagnostic(f"{code_prefix}102", "is a directory, not a JSON file", hint="pass a file", file=label, pointer="")])
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise error(
                [Diagnostic(f"{code_prefix}106", f"is {size} bytes; the limit is {MAX_BYTES}", hint="trim it upstream", file=label, pointer="")]
            )
        raw = p.read_bytes()
    except OSError as exc:
        raise error([Diagnostic(f"{code_prefix}102", f"cannot read ({exc.strerror})", hint="check permissions", file=label, pointer="")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            [Diagnostic(f"{code_prefix}103", f"not UTF-8 (byte {exc.start})", hint="save the file as UTF-8", file=label, pointer="")]
        ) from None
    return parse_json_text(text, label, error=error, code_prefix=code_prefix), label


def document_digest(doc: Any) -> str:
    """Content digest of a validated JSON document (key order kept: it shapes the prompt)."""
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
