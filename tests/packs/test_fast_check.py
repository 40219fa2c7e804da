"""The valid-pack fast path against the precise path: same verdict on every document.

`pack_is_valid` may only say yes to a document `validate_pack_document` (non-JSON values,
the JSON Schema via jsonschema, the cross-reference checks) finds nothing wrong with; and
the valid packs the strategies generate must take the fast path (else it buys nothing)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings

from policy_engine.errors import PackError
from policy_engine.packs import _marshalled, load_pack
from policy_engine.packs.fast_check import _STRUCTURE, pack_is_valid
from policy_engine.packs.validate import validate_pack_document
from tests.conftest import SHARED
from tests.packs.test_pack_fuzz import json_values, mutated_packs
from tests.strategies import packs

SHARED_PACKS = sorted((SHARED / "packs").glob("*.json"))


def _precise_ok(doc: Any) -> bool:
    return isinstance(doc, dict) and not validate_pack_document(copy.deepcopy(doc), "p.json")


def _fast_verdicts(doc: Any) -> set[bool]:
    """The fast path's verdicts: without parts, and with them twice (the second time the
    verdicts kept by content answer)."""
    parts = _marshalled(doc)
    return {pack_is_valid(doc, None), pack_is_valid(doc, parts), pack_is_valid(doc, parts)}


@settings(max_examples=300)
@given(mutated_packs())
def test_fast_path_verdict_equals_the_schema_and_checks_verdict(doc: Any) -> None:
    """Both ways: the documents are plain JSON values (as read from a file), where the fast
    path has no reason to defer (it defers only on str/int subclasses, tuples and the like)."""
    assert _fast_verdicts(doc) == {_precise_ok(doc)}


@given(json_values)
def test_random_json_verdict_equals_the_precise_verdict(doc: Any) -> None:
    assert _fast_verdicts(doc) == {_precise_ok(doc)}


@settings(max_examples=200)
@given(packs(), mutated_packs())
def test_verdicts_kept_by_content_serve_only_equal_parts(valid: Any, other: Any) -> None:
    """A pack whose lists equal a valid pack's, with another pack's other parts (or the
    reverse): the verdict kept for the shared parts must not stand for what differs."""
    for base, donor in ((valid, other), (other, valid)):
        if not isinstance(base, dict) or not isinstance(donor, dict):
            continue
        pack_is_valid(base, _marshalled(base))
        mixed = {**donor, **{k: base[k] for k in _STRUCTURE if k in base}}
        assert _fast_verdicts(mixed) == {_precise_ok(mixed)}


@settings(max_examples=100)
@given(packs())
def test_generated_valid_packs_take_the_fast_path(doc: Any) -> None:
    assert _precise_ok(doc)
    assert pack_is_valid(doc)


@pytest.mark.parametrize("path", SHARED_PACKS, ids=lambda p: p.stem)
def test_shared_packs_take_the_fast_path_and_load_equal(path: Any) -> None:
    doc = json.loads(path.read_text())
    assert pack_is_valid(doc)
    fast = load_pack(doc)
    slow_doc = copy.deepcopy(doc)
    assert fast.pools == load_pack(slow_doc, format="agent-retrieval-pack/v1").pools
    assert fast.source == doc and fast.source is not doc  # an exact copy, not the caller's object


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["candidate_fields"][0].__setitem__("score", "high"),
        lambda d: d["candidate_fields"][0].__setitem__("score", float("nan")),
        lambda d: d["candidate_fields"][0].__setitem__("score", True),
        lambda d: d["candidate_fields"][0].__setitem__("id", ""),
        lambda d: d["candidate_operators"][0].__setitem__("scope", "REGULAR"),
        lambda d: d["candidate_operators"][0].__setitem__("extra", (1, 2)),
        lambda d: d["candidate_operators"][0].__setitem__("extra", 2**53),
        lambda d: d["target"].__setitem__("delay", -1),
        lambda d: d["target"].__setitem__(1, "x"),
        lambda d: d["lanes"]["exploit"]["field_ids"].append(d["lanes"]["exploit"]["field_ids"][0]),
        lambda d: d["selected_subcategories"].append(d["selected_subcategories"][0]),
        lambda d: d.__setitem__("telemetry", []),
    ],
)
def test_each_kind_of_problem_leaves_the_fast_path(change: Any) -> None:
    doc = json.loads(SHARED_PACKS[0].read_text())
    change(doc)
    assert not pack_is_valid(doc)
    with pytest.raises(PackError):
        load_pack(doc)


def test_cyclic_and_too_deep_documents_are_refused_not_looped_on() -> None:
    doc = json.loads(SHARED_PACKS[0].read_text())
    doc["telemetry"] = {}
    doc["telemetry"]["self"] = doc["telemetry"]
    assert not pack_is_valid(doc)
    with pytest.raises(PackError) as cyclic:
        load_pack(doc)
    assert cyclic.value.diagnostics[0].code == "P119"
    deep: Any = "x"
    for _ in range(70):
        deep = [deep]
    doc["telemetry"] = {"deep": deep}
    with pytest.raises(PackError) as nested:
        load_pack(doc)
    assert nested.value.diagnostics[0].code == "P119"
