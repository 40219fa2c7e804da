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

__all__ = ["MAX_BYTES", "document_digest", "parse_json_text", "read_json_file"]


def document_digest(doc: Any) -> str:
    """Content digest of a validated JSON document (key order kept: it shapes the prompt)."""
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
