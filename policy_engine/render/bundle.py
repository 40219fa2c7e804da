"""A knowledge pack from documents already in memory: the agent hands its gate a
``knowledge_bundle`` (file stem -> parsed JSON of the knowledge directory), not a directory.

Checked as `load_knowledge` checks the files (a missing required document is an error: a
prompt built without it would be cheaper than the one really sent), and copied, so the
caller's dict can change afterwards without changing a pack the renderer's caches keyed by
its digest."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from policy_engine.errors import Diagnostic, PackError
from policy_engine.packs.validate import non_json_diagnostics
from policy_engine.render.knowledge import REQUIRED, KnowledgePack, shape_problems


def knowledge_from_documents(documents: Any, label: str = "knowledge_bundle") -> KnowledgePack:
    """Documents other than the five required ones are not part of the prompt and are left out."""
    if not isinstance(documents, Mapping):
        raise PackError(
            [
                Diagnostic(
                    "R103",
                    f"{label}: expected a mapping of file stem -> document, got a {type(documents).__name__}",
                    hint="pass the knowledge directory's files as {stem: parsed JSON}",
                    file=label,
                    pointer="",
                )
            ]
        )
    problems: list[Diagnostic] = []
    docs: dict[str, Any] = {}
    for name in REQUIRED:
        pointer = f"/{name}"
        if name not in documents:
            problems.append(
                Diagnostic(
                    "R102",
                    f"{label}: required knowledge pack document {name!r} is missing",
                    hint=f"load {name}.json into the bundle",
                    file=label,
                    pointer=pointer,
                )
            )
            continue
        doc = documents[name]
        found = shape_problems(name, doc, label, pointer)
        if not found:
            bad = non_json_diagnostics(dict(doc), label, "P")
            found = [
                Diagnostic(d.code, d.message, hint=d.hint, file=label, pointer=pointer + (d.pointer or "")) for d in bad
            ]
        if found:
            problems.extend(found)
            continue
        docs[name] = doc
    if problems:
        raise PackError(problems)
    # one serialisation gives both the copy and the digest (document_digest's text)
    text = json.dumps(docs, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return KnowledgePack(label, MappingProxyType(json.loads(text)), hashlib.sha256(text.encode("utf-8")).hexdigest())
