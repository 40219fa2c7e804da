"""The idea spec: read strictly and validated against schemas/ideaspec.schema.json.

Guards read its tags and target (a `tags contains "x"` guard builds a set of them), so a
tag that is a list or an object must be refused at the door, with a JSON Pointer, not
discovered as a TypeError deep inside an evaluation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from policy_engine.errors import Diagnostic, PackError
from policy_engine.packs.validate import non_json_diagnostics, schema_diagnostics
from policy_engine.reading.bounds import SMALL_DOCUMENT_BOUNDS
from policy_engine.reading.json_text import read_json_file


def idea_from_document(doc: Any, file: str = "<idea>") -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise PackError(
            [
                Diagnostic(
                    "R104",
                    f"an idea spec is a JSON object, got a {type(doc).__name__}",
                    hint="see the agent's idea spec format (reference section 2)",
                    file=file,
                    pointer="",
                )
            ]
        )
    problems = non_json_diagnostics(doc, file, "P") or schema_diagnostics(
        dict(doc), "ideaspec", file, "R104", "see `policy schema ideaspec`"
    )
    if problems:
        raise PackError(problems)
    return doc


def load_idea(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    doc, label = read_json_file(path, bounds=SMALL_DOCUMENT_BOUNDS)
    return idea_from_document(doc, label)
