"""The knowledge pack: the fixed part of the prompt the agent compacts to the pack's
candidates. A missing required file is an error (upstream behaviour, kept): a prompt built
without it would be cheaper than the one really sent. Rows the agent skips (non-objects,
signatures without a name) are legal here; the template decides what is sent, and a value
of the wrong type for the template's matching is reported when the prompt is built (R109)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from policy_engine.errors import Diagnostic, PackError
from policy_engine.packs.document import document_digest, read_json_file

REQUIRED = (
    "operator_signature_pack",
    "fastexpr_examples_pack",
    "fastexpr_counterexamples_pack",
    "fastexpr_visual_pack",
    "simulation_settings_allowed_pack",
)
#: key -> (required list key inside the document)
_SHAPE = {
    "operator_signature_pack": "operators",
    "fastexpr_examples_pack": "examples",
    "fastexpr_counterexamples_pack": "cases",
}


@dataclass(frozen=True, slots=True)
class KnowledgePack:
    """The agent's knowledge pack documents. Treated as immutable once loaded: ``digest``
    (of the documents' JSON) keys the renderer's caches."""

    directory: str
    documents: Mapping[str, Any]
    digest: str = ""

    def __getitem__(self, key: str) -> Any:
        return self.documents[key]


def shape_problems(name: str, doc: Any, file: str, base: str = "") -> list[Diagnostic]:
    """The shape every knowledge document must have, whether read from the agent's directory
    or handed over in memory (``base`` is its JSON Pointer inside a bundle): an object, and
    the list the compaction walks."""
    if not isinstance(doc, Mapping):
        return [
            Diagnostic(
                "R103",
                f"{base or file}: expected a JSON object, got a {type(doc).__name__}",
                hint="see the agent's knowledge pack format",
                file=file,
                pointer=base,
            )
        ]
    list_key = _SHAPE.get(name)
    if list_key is not None and not isinstance(doc.get(list_key), list):
        return [
            Diagnostic(
                "R103",
                f"{base}/{list_key}: expected an array",
                hint="see the agent's knowledge pack format",
                file=file,
                pointer=f"{base}/{list_key}",
            )
        ]
    return []


def load_knowledge(directory: str | os.PathLike[str]) -> KnowledgePack:
    root = Path(directory)
    label = str(directory)
    if not root.is_dir():
        raise PackError(
            [
                Diagnostic(
                    "R101",
                    "knowledge pack directory not found",
                    hint="pass the agent's knowledge pack directory (data/meta/index)",
                    file=label,
                    pointer="",
                )
            ]
        )
    docs: dict[str, Any] = {}
    problems: list[Diagnostic] = []
    for name in REQUIRED:
        path = root / f"{name}.json"
        if not path.is_file():
            problems.append(
                Diagnostic(
                    "R102",
                    f"{path}: required knowledge pack file is missing",
                    hint="rebuild the knowledge pack or copy the file",
                    file=str(path),
                    pointer="",
                )
            )
            continue
        doc, file = read_json_file(path)
        found = shape_problems(name, doc, file)
        if found:
            problems.extend(found)
            continue
        docs[name] = doc
    if problems:
        raise PackError(problems)
    return KnowledgePack(label, MappingProxyType(docs), document_digest(docs))


def load_idea(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """Kept here for importers of `policy_engine.render`; the reader is the pack layer's."""
    from policy_engine.packs.idea_input import load_idea as load

    return load(path)
