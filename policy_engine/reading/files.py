"""Bytes in: a path (or ``-`` for standard input) read with a size bound, and decoded.

The bound is enforced while reading, not only from ``stat``: standard input, pipes and
devices report no size, and ``/dev/zero`` must cost at most the limit plus one byte.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import BinaryIO

from policy_engine.errors import Diagnostic, PolicyError
from policy_engine.reading.bounds import Bounds

STDIN = "-"
STDIN_LABEL = "<stdin>"


def _problem(error: type[PolicyError], code: str, message: str, hint: str, label: str) -> PolicyError:
    return error([Diagnostic(code, message, hint=hint, file=label, pointer="")])


def read_bounded(
    path: str | os.PathLike[str], bounds: Bounds, *, error: type[PolicyError], prefix: str = "P"
) -> tuple[bytes, str]:
    """(raw bytes, label). Codes: {prefix}101 missing, {prefix}102 unreadable, {prefix}106 too large."""
    label = os.fspath(path) if not isinstance(path, bytes) else path.decode("utf-8", "replace")
    if label == STDIN:
        raw = (
            sys.stdin.buffer.read(bounds.max_bytes + 1)
            if hasattr(sys.stdin, "buffer")
            else sys.stdin.read(bounds.max_bytes + 1).encode("utf-8")
        )
        label = STDIN_LABEL
    else:
        if "\0" in label:
            raise _problem(
                error, f"{prefix}102", "the path contains a NUL byte", "check the path", label.replace("\0", "\\0")
            )
        try:
            p = Path(label)
            if p.is_dir():
                raise _problem(error, f"{prefix}102", "is a directory, not a file", "pass a file", label)
            with p.open("rb") as handle:
                raw = _read_at_most(handle, bounds.max_bytes + 1)
        except FileNotFoundError:
            raise _problem(error, f"{prefix}101", "no such file", "check the path", label) from None
        except OSError as exc:
            why = (
                "the file name is too long"
                if exc.errno == errno.ENAMETOOLONG
                else f"cannot read ({exc.strerror or type(exc).__name__})"
            )
            raise _problem(error, f"{prefix}102", why, "check the path and its permissions", label) from None
    if len(raw) > bounds.max_bytes:
        raise _problem(
            error,
            f"{prefix}106",
            f"is larger than the limit of {bounds.max_bytes:,} bytes",
            "this is far above any real input; trim it upstream",
            label,
        )
    return raw, label


def _read_at_most(handle: BinaryIO, limit: int) -> bytes:
    """Up to ``limit`` bytes. A read asked for the limit allocates the whole limit first
    (4 MB for a pack: most of the time a corpus spent reading a 20 KB file), so a file
    whose ``stat`` size is below the limit is read for that size plus one byte, which
    tells whether it is longer (it grew): only then is the rest read. A device or a pipe
    (size 0) and a file at the limit are read up to the limit directly."""
    size = os.fstat(handle.fileno()).st_size
    if not 0 < size < limit:
        return handle.read(limit)
    head = handle.read(size + 1)
    if len(head) <= size:  # the end came first
        return head
    return head + handle.read(limit - len(head))


def decode_utf8(raw: bytes, label: str, *, error: type[PolicyError], code: str) -> str:
    """Strict UTF-8 with the byte offset of the first bad byte. A BOM is refused too: JSON
    forbids it and a rule file's first token would silently carry it."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raise _problem(error, code, "starts with a UTF-8 byte order mark", "save the file as UTF-8 without BOM", label)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _problem(
            error,
            code,
            f"not UTF-8: invalid byte 0x{raw[exc.start]:02x} at byte offset {exc.start}",
            "save the file as UTF-8",
            label,
        ) from None
