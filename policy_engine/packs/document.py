"""JSON input documents for the pack layer: the strict reader lives in the input boundary
(`policy_engine.reading`); this module adds what is specific to packs, the content digest
that keys the renderer's caches."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from policy_engine.reading.bounds import PACK_BOUNDS
from policy_engine.reading.json_text import parse_json_text, read_json_file

MAX_BYTES = PACK_BOUNDS.max_bytes

__all__ = ["MAX_BYTES", "document_digest", "document_text", "parse_json_text", "read_json_file", "text_digest"]


def document_text(doc: Any) -> str:
    """The canonical JSON text a digest is taken of (key order kept: it shapes the prompt)."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def document_digest(doc: Any) -> str:
    """Content digest of a validated JSON document."""
    return text_digest(document_text(doc))
