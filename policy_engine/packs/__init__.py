"""Retrieval packs: strict reading, validation with JSON Pointers, and mapping onto pools
through a pack-format registry."""

from __future__ import annotations

import copy
import dataclasses
import os
from typing import Any, Mapping

from policy_engine.errors import PackError
from policy_engine.packs.document import document_digest, parse_json_text, read_json_file
from policy_engine.packs.registry import PackFormat, find_format, formats, register_format
from policy_engine.packs.usage_input import load_seen_combos, load_usage, usage_from_document
from policy_engine.packs.validate import validate_pack_document
from policy_engine.pools import Pools

__all__ = [
    "PackFormat",
    "formats",
    "load_pack",
    "load_seen_combos",
    "load_usage",
    "parse_json_text",
    "read_pack_document",
    "register_format",
    "usage_from_document",
    "validate_pack_document",
]


def read_pack_document(path: str | os.PathLike[str]) -> tuple[Any, str]:
    return read_json_file(path)


def load_pack(
    source: str | os.PathLike[str] | Mapping[str, Any] | Any,
    *,
    file: str | None = None,
    format: str | None = None,
    idea: Mapping[str, Any] | None = None,
) -> Pools:
    """Validate and map a pack: a path, or an already-parsed document. A document is
    deep-copied first, so the caller's object is never shared with (or mutated through)
    the returned pools."""
    if not isinstance(source, (str, os.PathLike)):
        doc, label = copy.deepcopy(source), file or "<pack>"
    else:
        doc, label = read_json_file(source)
        label = file or label
    fmt = find_format(doc, label, format)
    problems = fmt.validate(doc, label)
    if problems:
        raise PackError(problems)
    pools = fmt.adapt(doc, idea=idea)
    return dataclasses.replace(pools, digest=document_digest(doc))

