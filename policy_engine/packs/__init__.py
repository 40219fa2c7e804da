"""Retrieval packs: strict reading, validation with JSON Pointers, and mapping onto pools
through a pack-format registry."""

from __future__ import annotations

import copy as _copy
import dataclasses
import hashlib
import json
import marshal
import os
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from policy_engine.errors import Diagnostic, PackError
from policy_engine.packs.document import document_text, parse_json_text, read_json_file
from policy_engine.packs.registry import PackFormat, find_format, formats, register_format
from policy_engine.packs.usage_input import load_seen_combos, load_usage, usage_from_document
from policy_engine.packs.validate import validate_pack_document
from policy_engine.pools import Pools
from policy_engine.reading.bounds import PACK_BOUNDS
from policy_engine.reading.json_text import (
    JSON_PART,
    SharedValues,
    depth_exceeds,
    json_pointer,
    lone_surrogate_error,
    read_json_parts,
)

__all__ = [
    "PackFormat",
    "formats",
    "load_pack",
    "load_pack_file",
    "load_seen_combos",
    "load_usage",
    "parse_json_text",
    "read_pack_document",
    "read_pack_parts",
    "register_format",
    "usage_from_document",
    "validate_pack_document",
]


def read_pack_document(path: str | os.PathLike[str], *, check_nesting: bool = True) -> tuple[Any, str]:
    """Read a pack file (``-`` for standard input) as a document, strictly and bounded.
    ``check_nesting=False`` skips the nesting walk for a caller that hands the document
    straight to `load_pack`, whose own checks bound it (no need to walk it twice)."""
    return read_json_file(path, check_nesting=check_nesting)


def read_pack_parts(
    path: str | os.PathLike[str], *, check_nesting: bool = True, shared: SharedValues | None = None
) -> tuple[Any, str, dict[str, bytes] | None]:
    """`read_pack_document`, and the reader's content parts of the document (each
    top-level value's JSON text, when the fast reader read it; else None), which
    `load_pack` takes as ``reader_parts`` instead of encoding the document again.
    ``shared``: the values a run has read before, shared with this document (which must
    then never be changed; `reading.json_text.SharedValues`)."""
    return read_json_parts(path, check_nesting=check_nesting, shared=shared)


def load_pack(
    document: Mapping[str, Any],
    *,
    file: str | None = None,
    format: str | None = None,
    idea: Mapping[str, Any] | None = None,
    copy: bool = True,
    reader_parts: Mapping[str, bytes] | None = None,
) -> Pools:
    """Validate and map a pack document. A pack is a JSON object, full stop: a string is
    never taken for a path (that would let a pack's content read any file); loading from a
    path is the separate `load_pack_file`. The document is copied first, so the caller's
    object is never shared with (or mutated through) the returned pools; ``copy=False`` is
    for a caller that hands the document over (it just read it and will not change it).

    ``reader_parts``: what `read_pack_parts` returned with this very document, unchanged
    since. The caches are keyed by them, so parts of another document would have them
    answer for that one: pass nothing rather than anything else."""
    label = file or "<pack>"
    if not isinstance(document, Mapping):
        kind = "JSON string" if isinstance(document, str) else type(document).__name__
        raise PackError(
            [
                Diagnostic(
                    "P112",
                    f"a retrieval pack is a JSON object, got a {kind}",
                    hint="a pack is the agent's retrieval pack object; API callers pass the document (a dict), or read a file with load_pack_file(path)",
                    file=label,
                    pointer="",
                )
            ]
        )
    fmt = find_format(document, label, format)
    given = dict(reader_parts) if reader_parts is not None else None
    quick_parts = None
    if fmt.quick_check is not None:
        quick_parts = given if given is not None else _marshalled(document)
    if fmt.quick_check is not None and fmt.quick_check(document, quick_parts):
        # Valid, and plain JSON values only, of the exact built-in types (the check is
        # bounded: a cyclic or too deep document fails it): its parts are the digest's
        # input and, read back, an exact copy. The reader's parts hold no lone surrogate
        # (it refuses them).
        parts = given if given is not None else _content_parts(document, label, quick_parts)
        doc = {key: _part_value(data) for key, data in parts.items()} if copy else document
        pools = fmt.adapt(doc, idea=idea, parts=parts) if fmt.candidate_keys else fmt.adapt(doc, idea=idea)
        return _identified(fmt, pools, parts)
    deep = depth_exceeds(document, PACK_BOUNDS.max_depth)
    if deep is not None:  # before deepcopy, which recurses (and a cyclic dict is infinitely deep)
        raise PackError(
            [
                Diagnostic(
                    "P119",
                    f"nested deeper than {PACK_BOUNDS.max_depth} levels",
                    hint="flatten the document",
                    file=label,
                    pointer=json_pointer(deep),
                )
            ]
        )
    doc = _copy.deepcopy(dict(document)) if copy else document
    problems = fmt.validate(doc, label)
    if problems:
        raise PackError(problems)
    parts = given if given is not None else _content_parts(doc, label)
    return _identified(fmt, fmt.adapt(doc, idea=idea), parts)


#: UTF-8 never holds these bytes; marshal writes a surrogate's code unit as them
_SURROGATE_BYTES = re.compile(rb"\xed[\xa0-\xbf]")


def _part_value(data: bytes) -> Any:
    """A content part read back: the reader's JSON text (`JSON_PART` first), or marshal's."""
    if data.startswith(JSON_PART):
        import msgspec  # the reader's parts were written by it

        return msgspec.json.decode(data[len(JSON_PART) :])
    return marshal.loads(data)


def _marshalled(document: Any) -> dict[str, bytes] | None:
    """Each top-level value's marshal bytes, or None when marshal refuses one (a type it
    does not know, a cycle: its depth limit stops it) or the document is no dict."""
    if type(document) is not dict:
        return None
    try:
        return {key: marshal.dumps(value, 2) for key, value in document.items()}
    except ValueError:
        return None


def _content_parts(
    document: Mapping[str, Any], label: str, marshalled: dict[str, bytes] | None = None
) -> dict[str, bytes]:
    """Each top-level value's content key: its marshal bytes in format 2 (C speed, no
    back-references, so equal values give equal bytes; `render.caches.content_key`). A
    document with values of other types (a str subclass, on the precise path) is taken
    through its JSON text first, so equal content gets equal bytes on both paths. A
    document handed over by an API caller (files are checked when read) may hold a lone
    surrogate, which is no Unicode text: refused (P121). The byte search may also hit a
    number's binary form; then the walk finds nothing."""
    parts = marshalled if marshalled is not None else _marshalled(document)
    if parts is None:  # the JSON round trip keeps a lone surrogate: the search below finds it
        plain = json.loads(document_text(document))
        parts = {key: marshal.dumps(value, 2) for key, value in plain.items()}
    if any(_SURROGATE_BYTES.search(data) is not None for data in parts.values()):
        bad = lone_surrogate_error(document, label)
        if bad is not None:
            raise bad
    return parts


def _identified(fmt: PackFormat, pools: Pools, parts: dict[str, bytes]) -> Pools:
    """``pools`` with its content identity: the digest of the whole document (each key and
    its value's bytes in order: marshal's encodings delimit themselves, so equal digests
    mean equal documents), the parts' keys, and the key of the parts its candidates come from."""
    digest = hashlib.sha256()
    for key, data in parts.items():
        digest.update(marshal.dumps(key, 2))
        digest.update(data)
    structure = tuple(parts.get(key, b"") for key in fmt.candidate_keys)
    return dataclasses.replace(
        pools, digest=digest.hexdigest(), content_keys=MappingProxyType(parts), structure_key=structure
    )


def load_pack_file(
    path: str | os.PathLike[str], *, format: str | None = None, idea: Mapping[str, Any] | None = None
) -> Pools:
    """Read a pack file (``-`` for standard input) and load it: the explicit path form."""
    doc, label, parts = read_json_parts(path)
    return load_pack(doc, file=label, format=format, idea=idea, copy=False, reader_parts=parts)
