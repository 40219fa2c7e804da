"""The validators resolve the shipped schemas' local `$ref`s once, up front (validate.py's
`_inline_local_refs`); the published files keep their `$ref`s. The inlined schema must judge
every document exactly as the published one does, with no reference left to resolve."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest

from policy_engine.packs.validate import _inline_local_refs, load_schema
from tests.conftest import SHARED

SEED = json.loads((SHARED / "packs" / "seed_5x15x72x60.json").read_text())


def _errors(schema: dict[str, Any], doc: Any) -> list[tuple[str, str]]:
    validator = jsonschema.Draft202012Validator(schema)
    return sorted((e.json_path, e.message) for e in validator.iter_errors(doc))


def _inlined(name: str) -> dict[str, Any]:
    schema = load_schema(name)
    before = copy.deepcopy(schema)
    inlined: dict[str, Any] = _inline_local_refs(schema, schema.get("$defs", {}))
    assert schema == before  # the published (cached) schema is not modified
    return inlined


def _packs() -> list[Any]:
    broken = copy.deepcopy(SEED)
    broken["candidate_fields"][0]["lane"] = "sideways"
    broken["candidate_datasets"][1]["score"] = "high"
    broken["lanes"]["explore"] = {"field_ids": [1]}
    return [SEED, broken, {**SEED, "target": {"delay": -1}}, {}]


@pytest.mark.parametrize("name", ["retrieval_pack", "usage", "template", "testcases", "decision"])
def test_an_inlined_schema_has_no_reference_left(name: str) -> None:
    text = json.dumps(_inlined(name))
    assert '"$ref"' not in text and '"$defs"' not in text
    assert '"$ref"' in json.dumps(load_schema(name))


@pytest.mark.parametrize("doc", _packs(), ids=["valid", "broken", "bad_delay", "empty"])
def test_the_inlined_pack_schema_judges_as_the_published_one(doc: Any) -> None:
    assert _errors(_inlined("retrieval_pack"), doc) == _errors(load_schema("retrieval_pack"), doc)


@pytest.mark.parametrize(
    "doc", [{"batch": {"tokens": 1, "usd": "0.5"}}, {"batch": {"tokens": -1}, "day": {"usd": "x"}}, {"day": []}]
)
def test_the_inlined_usage_schema_judges_as_the_published_one(doc: Any) -> None:
    assert _errors(_inlined("usage"), doc) == _errors(load_schema("usage"), doc)


def test_inlining_walks_lists_drops_defs_and_keeps_other_refs() -> None:
    defs = {"n": {"type": "integer"}}
    node = {"anyOf": [{"$ref": "#/$defs/n"}, {"const": 3}], "x": {"$ref": "other.json"}, "$defs": defs}
    assert _inline_local_refs(node, defs) == {"anyOf": [{"type": "integer"}, {"const": 3}], "x": {"$ref": "other.json"}}
